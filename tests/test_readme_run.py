"""The README's run command works: the demo comes up, the printed key submits a request,
and the request completes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.requests import erasure_body
from tests.support.services import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def readme_command(name: str) -> list[str]:
    """The README's command for `name` ("run" or "test"), from its first code block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands.*?```sh\n(.*?)```", text, re.S)
    assert block, "README has no 'Two commands' block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    found = [c for c in commands if c.endswith(f" {name}")]
    assert len(found) == 1, f"README names no single {name} command: {commands}"
    return found[0].split()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert " ".join(readme_command("test")) in [line.strip() for line in ci]


def test_readme_run_command_serves_the_demo_and_completes_a_request(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env.update(
        {
            "LETHE_DATA_DIR": str(tmp_path / "data"),
            "LETHE_PORT": str(port),
            "LETHE_HOST": "127.0.0.1",
        }
    )
    venv = Path(sys.prefix)
    command = [*readme_command("run"), f"VENV={venv}"]
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True
    )
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, "".join(output)[-4000:]
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=120, interval=0.5, what="the demo to serve /healthz")
        print(f"demo up after {time.monotonic() - started:.1f}s (install already done)")
        key = re.search(r"Demo API key \(admin\): (lethe_\S+)", "".join(output))
        assert key, "the run command printed no API key"
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            resp = client.post(
                "/v1/erasure-requests", json=erasure_body(["digits-00000", "digits-00001"])
            )
            assert resp.status_code == 202, resp.text
            request_id = resp.json()["id"]

            def completed() -> bool:
                body = client.get(f"/v1/erasure-requests/{request_id}").json()
                assert body["status"] not in ("failed", "canceled", "denied"), body
                return body["status"] == "completed"

            wait_until(completed, timeout=120, interval=0.5, what="the request to complete")
            assert client.get("/v1/models/digits-cnn").json()["latest_version"] == 2
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "data" / "lethe.db").exists()
