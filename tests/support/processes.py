"""Processes the tests start (in their own process group) and stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.support.services import wait_until


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process's group, SIGKILL it if it has not exited after `timeout`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def settings_env(settings: Any) -> dict[str, str]:
    """The LETHE_* environment that reproduces `settings` in another process."""
    from pydantic import SecretStr

    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None or value == "":
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"LETHE_{name.upper()}"] = str(value)
    env["LETHE_DATABASE_URL"] = settings.resolved_database_url
    env["LETHE_STORE_URL"] = settings.resolved_store_url
    return env


class WorkerProcess:
    """A real `lethe worker` (Celery, prefork, concurrency 1) in its own process group."""

    def __init__(self, settings: Any, log_path: Path, *, name: str, beat: bool = False):
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
        env.update(settings_env(settings))
        # the CLI users run: `lethe worker -Q gpu,default -c 1 --name ... [--beat]`
        cmd = [sys.executable, "-m", "lethe.cli", "worker", "-Q", "gpu,default", "-c", "1"]
        cmd += ["--name", name, *(["--beat"] if beat else [])]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(
            lambda: b"ready." in log_path.read_bytes() or self.proc.poll() is not None,
            timeout=60,
            what=f"worker {name} to start",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited:\n{log_path.read_text()[-3000:]}")

    def child_pids(self) -> list[int]:
        import subprocess

        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()
