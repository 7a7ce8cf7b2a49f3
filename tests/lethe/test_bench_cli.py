"""`lethe bench` hands every argument, --help included, to the benchmark's own parser, and
answers --help without importing torch."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from lethe.cli.main import app


def test_bench_help_is_the_benchmarks_own() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for needle in ("--seed-offset", "--regime", "noise floor", "digits"):
        assert needle in result.output


def test_bench_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from lethe.cli.main import app\n"
        "try:\n"
        "    app(['bench', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--seed-offset" in done.stdout
