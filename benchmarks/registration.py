"""Time `POST /v1/models` with a large uploaded training set (the manifest goes in bulk:
COPY on PostgreSQL, 10k-row executemany chunks on SQLite).

    python -m benchmarks.registration --samples 1000000 [--database-url postgresql+psycopg://...]

Builds an npz of N samples (1 feature each, with subjects, which are keyed-hashed), a
zero checkpoint matching `digits-cnn`, migrates a fresh database and registers through the
real app (in process), printing the wall time of the request and of its parts. This is
the API's half of a registration: the checks, the stored upload and the manifest rows,
answered 202 with the model `validating`. The registration job (no worker runs here; a
1-feature npz does not fit `digits-cnn` anyway) is not part of the figure.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path
from typing import Any


def _npz(n: int) -> bytes:
    import numpy as np

    from app.registry.training_set import MIN_VAL_SAMPLES

    ids = np.char.add("s-", np.arange(n).astype(str))
    out = io.BytesIO()
    np.savez(
        out,
        x=np.zeros((n, 1), np.float32),
        y=(np.arange(n) % 10).astype(np.int64),
        ids=ids,
        subjects=np.char.add("user-", (np.arange(n) // 5).astype(str)),
        x_val=np.zeros((MIN_VAL_SAMPLES, 1), np.float32),
        y_val=np.arange(MIN_VAL_SAMPLES) % 10,
        ids_val=np.char.add("v-", np.arange(MIN_VAL_SAMPLES).astype(str)),
    )
    return out.getvalue()


def _checkpoint(spec: dict[str, Any]) -> bytes:
    import numpy as np
    from safetensors.numpy import save

    kinds = {"F32": np.float32, "I64": np.int64}
    return save(
        {
            name: np.zeros([10 if d == "num_classes" else d for d in t["shape"]], kinds[t["dtype"]])
            for name, t in spec.items()
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from app.auth.service import create_key
    from app.core.config import Settings
    from app.core.db import session_scope
    from app.core.migrate import upgrade
    from app.main import create_app
    from lethe.specs import publish_specs, tensor_spec
    from workers.runtime import build_runtime

    tmp = Path(tempfile.mkdtemp(prefix="lethe-regbench-"))
    url = args.database_url or f"sqlite:///{tmp / 'lethe.db'}"
    upgrade(url)
    settings = Settings(env="test", data_dir=tmp, database_url=url)
    rt = build_runtime(settings)
    publish_specs(rt.session_factory)
    with session_scope(rt.session_factory, None) as s:
        _, key = create_key(session=s, name="bench", scopes=["admin"])
    t0 = time.perf_counter()
    data = _npz(args.samples)
    checkpoint = _checkpoint(tensor_spec("digits-cnn"))
    built = time.perf_counter() - t0
    app = create_app(settings, session_factory=rt.session_factory, store=rt.store)
    with TestClient(app) as client:
        t0 = time.perf_counter()
        resp = client.post(
            "/v1/models",
            data={"name": "bench", "architecture": "digits-cnn"},
            files={"checkpoint": ("w.safetensors", checkpoint), "training_set": ("t.npz", data)},
            headers={"Authorization": f"Bearer {key}"},
        )
        took = time.perf_counter() - t0
    assert resp.status_code == 202 and resp.json()["status"] == "validating", resp.text
    backend = url.split(":", 1)[0]
    print(
        f"{backend}: accepted {resp.json()['training_samples']:,} samples "
        f"({len(data) / 1e6:.1f} MB npz) in {took:.1f} s (building the upload: {built:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
