"""The CLI as a new user meets it: a command that cannot reach the API says which URL and
what to do; a command run outside the project folder creates no database and says where it
looked; the demo key is printed again on every run instead of piling up; beat writes its
schedule under the data directory, not the working directory."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import stop_process_group
from tests.support.services import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def lethe(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`lethe ...` as a user runs it: a fresh process, no LETHE_* but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "lethe.cli", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_client_commands_say_which_url_they_could_not_reach(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args, env in (
        (["requests", "get", str(uuid.uuid4())], {"LETHE_URL": url}),
        (["versions", "list", "digits-cnn", "--url", url], {}),
    ):
        ran = lethe(*args, cwd=tmp_path, **env)
        assert ran.returncode == 1, ran.stdout + ran.stderr
        assert f"could not reach the Lethe API at {url}" in ran.stderr
        assert "LETHE_URL" in ran.stderr and "make run" in ran.stderr
        assert "Traceback" not in ran.stderr


@pytest.mark.parametrize("args", [["audit", "verify"], ["keys", "list"], ["store", "verify"]])
def test_database_commands_outside_the_project_folder_create_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    ran = lethe(*args, cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    expected = tmp_path.resolve() / "data" / "lethe.db"
    assert f"no Lethe database at {expected}" in ran.stderr
    assert "LETHE_DATA_DIR" in ran.stderr and "Traceback" not in ran.stderr
    assert not (tmp_path / "data").exists()  # nothing was created


def test_database_commands_name_an_unmigrated_or_unreachable_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    ran = lethe("audit", "verify", cwd=tmp_path, LETHE_DATABASE_URL=f"sqlite:///{empty}")
    assert ran.returncode == 1 and "no Lethe tables: run `lethe migrate`" in ran.stderr
    assert "Traceback" not in ran.stderr
    down = f"postgresql+psycopg://lethe:secret-pw@127.0.0.1:{free_port()}/lethe"
    ran = lethe("keys", "list", cwd=tmp_path, LETHE_DATABASE_URL=down)
    assert ran.returncode == 1 and "cannot reach the database" in ran.stderr
    assert "secret-pw" not in ran.stderr and "Traceback" not in ran.stderr


def test_the_demo_key_is_reused_and_never_piles_up(runtime: Any, tmp_path: Path) -> None:
    from app.auth.models import ApiKey
    from app.auth.service import authenticate, revoke_key
    from app.core.db import session_scope
    from lethe.demo import demo_key

    factory, data_dir = runtime.session_factory, tmp_path / "demo-data"

    def live_demo_keys() -> list[str]:
        with session_scope(factory, None) as s:
            rows = s.query(ApiKey).filter_by(name="demo", revoked_at=None).all()
            return [r.prefix for r in rows]

    first = demo_key(factory, data_dir)
    assert not first.reused and first.revoked == []
    assert (data_dir / "demo-api-key").stat().st_mode & 0o777 == 0o600
    for _ in range(2):  # every later `make run` prints the same, working key
        again = demo_key(factory, data_dir)
        assert again.reused and again.key == first.key
    assert len(live_demo_keys()) == 1

    with session_scope(factory, None) as s:  # the kept key was revoked by someone
        revoke_key(session=s, prefix=first.key.split("_")[1])
    second = demo_key(factory, data_dir)
    assert not second.reused and second.key != first.key
    (data_dir / "demo-api-key").unlink()  # or its file was lost: its secret is gone
    third = demo_key(factory, data_dir)
    assert third.revoked == [second.key.split("_")[1]]
    assert live_demo_keys() == [third.key.split("_")[1]]
    with session_scope(factory, None) as s:
        assert authenticate(session=s, token=second.key) is None
        assert authenticate(session=s, token=third.key) is not None


def test_beat_keeps_its_schedule_in_the_data_dir(redis_url: str, tmp_path: Path) -> None:
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env = {**clean, "PYTHONPATH": str(ROOT), "LETHE_BROKER_URL": redis_url}
    env["LETHE_DATA_DIR"] = str(data)
    log = (tmp_path / "beat.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lethe.cli", "beat"],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or any(data.glob("celerybeat-schedule*")),
            timeout=60,
            what="beat to write its schedule",
        )
        assert proc.poll() is None, (tmp_path / "beat.log").read_text()[-3000:]
    finally:
        stop_process_group(proc)
        log.close()
    assert list(cwd.iterdir()) == []  # nothing in the working directory
