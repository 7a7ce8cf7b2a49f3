"""The API image has no torch: in distributed mode everything it runs must import
without it (`lethe serve`, `lethe migrate`, `lethe beat`, `lethe worker -Q default`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter in which `import torch` fails, as it does in the API image.
PROBE = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "numpy", "sklearn", "mnist1d", "unlearning"):
            raise ModuleNotFoundError(f"{name} is not installed in the API image")
        return None

sys.meta_path.insert(0, NoTorch())

from fastapi.testclient import TestClient

import workers.cli
import workers.tasks
from workers.asgi import build_app

app = build_app()
with TestClient(app) as client:
    assert client.get("/healthz").status_code == 200
assert type(app.state.dispatcher).__name__ == "CeleryDispatcher"
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "unlearning"))
assert not leaked, leaked
print("ok")
"""


def test_distributed_api_process_never_imports_torch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env.update(
        {
            "LETHE_ENV": "test",
            "LETHE_DATA_DIR": str(tmp_path),
            "LETHE_BROKER_URL": "redis://127.0.0.1:1/0",  # never contacted
            "LETHE_DATABASE_URL": f"sqlite:///{tmp_path / 'lethe.db'}",
            "LETHE_STORE_URL": (tmp_path / "store").as_uri(),
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
