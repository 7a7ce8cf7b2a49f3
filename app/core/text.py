"""What id text may contain, for training-sample ids everywhere (registration and requests).

Refused: C0 controls and DEL (break logs, CSV exports, terminals), C1 controls
(U+0080-U+009F: also control characters; some terminals act on them) and the bidirectional
embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069), which make an id
display as a different one (the "Trojan Source" trick, CVE-2021-42574). Any other unicode,
emoji and joiners included, is id text.
"""

from __future__ import annotations

import re

UNSAFE_ID_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
UNSAFE_ID_RULE = "without control or bidirectional-override characters"
