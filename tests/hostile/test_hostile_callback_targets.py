"""Callback targets under an allow-list: an entry opens exactly what it names.

`tests/callbacks/test_callbacks.py` shows loopback, link-local (cloud metadata), private and
IPv4-mapped targets refused with an empty allow-list, and nothing stored. Here: allow-listing
one internal host or range must not open its neighbours, other internal ranges, or the same
host spelled another way.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.service import make_settings

ALLOWED = "127.0.0.1,10.1.0.0/16"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:9/hook", True),
        ("http://10.1.2.3/hook", True),
        ("http://127.0.0.2/hook", False),  # a neighbour of the listed host
        ("http://10.2.0.1/hook", False),  # outside the listed range
        ("http://169.254.169.254/latest/meta-data/", False),  # cloud metadata
        ("http://192.168.1.1/hook", False),
        ("http://[::1]/hook", False),  # loopback, but not the listed address
        ("http://[::ffff:169.254.169.254]/hook", False),  # metadata, IPv4-mapped
        ("http://0.0.0.0/hook", False),
        ("http://[fe80::1]/hook", False),
    ],
)
def test_an_allow_list_entry_opens_only_what_it_names(
    tmp_path: Any, url: str, allowed: bool
) -> None:
    from app.callbacks.targets import TargetRefused, check_targets

    settings = make_settings(tmp_path, "sqlite://", callback_allowed_hosts=ALLOWED)
    if allowed:
        check_targets([url], settings, pointer="/status_callback_urls")
        return
    with pytest.raises(TargetRefused) as refused:
        check_targets([url], settings, pointer="/status_callback_urls")
    problem = refused.value.to_problem()
    assert problem["status"] == 422 and problem["type"].endswith("/callback-target-refused")
    assert problem["errors"][0]["pointer"] == "/status_callback_urls/0"
