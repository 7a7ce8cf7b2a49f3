"""The Dockerfile, read as text: the images cannot be built without a Docker engine, so
this checks what a build would produce — targets, user, healthchecks, no baked-in
secrets, and no torch in the API image."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    parent: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.lines if ins == instruction]


def parse(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARGs and stages; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: {line}"
            current = stages[words[2]] = Stage(words[2], words[0])
        elif current is None:
            assert instruction == "ARG", line
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            current.lines.append((instruction, args.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return parse((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def stages(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> dict[str, Stage]:
    return dockerfile[1]


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage, its ancestors, and every stage it copies from (recursively)."""
    seen: list[Stage] = []
    todo = [name]
    while todo:
        stage = stages.get(todo.pop())
        if stage is None or stage in seen:
            continue
        seen.append(stage)
        todo.append(stage.parent)
        todo += [m for c in stage.all("COPY") for m in re.findall(r"--from=(\S+)", c)]
    return seen


def test_api_and_worker_targets_share_one_base(stages: dict[str, Stage]) -> None:
    assert {"base", "api", "worker"} <= set(stages)
    assert stages["api"].parent == "base"
    assert stages["worker"].parent == "base"
    assert any("pip install -r" in r for r in stages["base"].all("RUN"))


@pytest.mark.parametrize("target", ["api", "worker"])
def test_targets_run_as_a_non_root_user(stages: dict[str, Stage], target: str) -> None:
    stage = stages[target]
    users = stage.all("USER")
    assert users, f"{target} runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    names = [ins for ins, _ in stage.lines]
    last_user = len(names) - 1 - names[::-1].index("USER")
    assert "RUN" not in names[last_user:], "nothing after USER should need root"
    assert any("useradd" in r and "lethe" in r for r in stages["base"].all("RUN"))


@pytest.mark.parametrize(("target", "probe"), [("api", "/healthz"), ("worker", "inspect ping")])
def test_targets_have_a_healthcheck(stages: dict[str, Stage], target: str, probe: str) -> None:
    (check,) = stages[target].all("HEALTHCHECK")
    assert " CMD " in f" {check} " and probe in check


def test_commands(stages: dict[str, Stage]) -> None:
    assert shlex.split(stages["api"].all("CMD")[-1].replace(",", " ").strip("[]")) == [
        "lethe",
        "serve",
        "--host",
        "0.0.0.0",
    ]
    worker = shlex.split(stages["worker"].all("CMD")[-1].replace(",", " ").strip("[]"))
    assert worker == ["lethe", "worker", "-Q", "gpu", "-c", "1"]


def test_no_secret_is_baked_in(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> None:
    global_args, stages = dockerfile
    secretish = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|ACCESS_KEY|PRIVATE|API_KEY")
    names = list(global_args)
    for stage in stages.values():
        for env in stage.all("ENV"):
            names += [word.split("=")[0] for word in shlex.split(env)]
        names += [arg.split("=")[0] for arg in stage.all("ARG")]
    assert names and not [n for n in names if secretish.search(n)]
    text = (ROOT / "Dockerfile").read_text()
    assert "LETHE_SECRET_KEY" not in text and "AWS_" not in text


def test_the_api_image_installs_no_torch(stages: dict[str, Stage]) -> None:
    base_deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in base_deps if re.match(r"(torch|nvidia)\b", d)]
    for stage in chain(stages, "api"):
        for run in stage.all("RUN"):
            assert "torch" not in run and "[worker]" not in run, (stage.name, run)
            for pip in re.findall(r"pip (?:install|wheel)[^&]*", run):
                assert "-r " in pip or "--no-deps" in pip, (stage.name, pip)


def test_the_worker_pins_the_projects_torch(stages: dict[str, Stage]) -> None:
    args = dict(a.partition("=")[::2] for a in stages["worker"].all("ARG"))
    makefile = (ROOT / "Makefile").read_text()
    for name in ("TORCH_VERSION", "TORCHVISION_VERSION"):
        pin = re.search(rf"^{name} \?= (\S+)$", makefile, re.M)
        assert pin and args[name] == pin.group(1), name
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    runs = " ".join(stages["worker"].all("RUN"))
    assert '"torch==${TORCH_VERSION}"' in runs and "[worker]" in runs
    assert '"torchvision==${TORCHVISION_VERSION}"' in runs


def test_copied_sources_exist_and_the_context_is_clean(stages: dict[str, Stage]) -> None:
    for stage in stages.values():
        for copy in stage.all("COPY"):
            if "--from=" in copy:
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "data", "*.db"} <= ignored
