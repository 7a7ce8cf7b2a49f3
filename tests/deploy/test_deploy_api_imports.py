"""The API image has no torch: in distributed mode everything it runs must import
without it (`lethe serve`, `lethe migrate`, `lethe beat`, `lethe worker -Q default`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def missing_in_api_image() -> set[str]:
    """The worker extra's packages that the base dependencies do not also install, plus the
    engine itself: what `pip install .` (the API image) lacks."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in reqs}  # type: ignore[union-attr]

    extra = names(project["optional-dependencies"]["worker"]) - names(project["dependencies"])
    modules = {"scikit-learn": "sklearn"}
    return {modules.get(n, n) for n in extra} | {"torch", "unlearning"}


# A fresh interpreter in which importing any of MISSING fails, as it does in the API image.
PROBE = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"{name} is not installed in the API image")
        return None

sys.meta_path.insert(0, NotInstalled())

import lethe.cli.main
import workers.tasks
from lethe.asgi import build_app

app = build_app()
assert "/v1/erasure-requests" in app.openapi()["paths"]
assert type(app.state.dispatcher).__name__ == "CeleryDispatcher"
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "unlearning"))
assert not leaked, leaked
print("ok")
"""


def _env(tmp_path: Path) -> dict[str, str]:
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
    return env


def test_distributed_api_process_never_imports_torch(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"MISSING = {sorted(missing_in_api_image())!r}\n{PROBE}"],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


WORKER_PROBE = """
import sys
import workers.tasks

routers = sorted(m for m in sys.modules if m == "app.main" or m.endswith(".router"))
assert not routers, routers
print("ok")
"""


def test_a_celery_worker_imports_no_router(tmp_path: Path) -> None:
    """The worker's task module loads the job pipeline and housekeeping, not the HTTP API."""
    result = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
