"""docker-compose.yml: the distributed stack a team deploys, checked without a Docker engine.

Where the compose plugin is installed, `docker compose config -q` validates the file too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"

# What the .env next to the compose file must define (docs/DEPLOYMENT.md); dummies here.
REQUIRED_VARS = {
    "POSTGRES_PASSWORD": "pg-" + "0" * 32,
    "MINIO_ROOT_USER": "minio-root",
    "MINIO_ROOT_PASSWORD": "mr-" + "1" * 32,
    "LETHE_S3_ACCESS_KEY_ID": "lethe-store",
    "LETHE_S3_SECRET_ACCESS_KEY": "s3-" + "2" * 32,
    "LETHE_SECRET_KEY": "sk-" + "3" * 48,
    "LETHE_OPENDSR_PROCESSOR_DOMAIN": "lethe.example.org",
}
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}`; `$${...}` is an escaped dollar.
INTERPOLATION = re.compile(
    r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
)
LONG_RUNNING = ("postgres", "redis", "minio", "api", "worker-gpu", "worker-cpu", "beat")
ONE_SHOT = ("minio-init", "migrate")


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, enough for this file."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if name in env:
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} has no value and no default: {arg}")

    return INTERPOLATION.sub(one, value).replace("$$", "$")


def command_line(service: dict[str, Any]) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert set(LONG_RUNNING + ONE_SHOT) <= set(services(compose))


def test_one_shots_do_not_restart_and_run_their_job(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name in ONE_SHOT:
        assert svc[name]["restart"] == "no", name
    assert svc["migrate"]["command"] == ["lethe", "migrate"]
    init = command_line(svc["minio-init"])
    bucket = svc["api"]["environment"]["LETHE_STORE_URL"].removeprefix("s3://").split("/")[0]
    assert f"mc mb --ignore-existing local/{bucket}" in init
    assert "mc admin user add" in init  # Lethe uses its own key, not MinIO's root account


def test_dependencies_wait_for_health_and_one_shots(compose: dict[str, Any]) -> None:
    svc = services(compose)
    wanted = {
        "minio-init": {"minio": "service_healthy"},
        "migrate": {"postgres": "service_healthy"},
        "api": {
            "migrate": "service_completed_successfully",
            "minio-init": "service_completed_successfully",
            "redis": "service_healthy",
        },
        "worker-gpu": {
            "migrate": "service_completed_successfully",
            "minio-init": "service_completed_successfully",
            "redis": "service_healthy",
        },
        "worker-cpu": {
            "migrate": "service_completed_successfully",
            "redis": "service_healthy",
        },
        "beat": {"migrate": "service_completed_successfully", "redis": "service_healthy"},
    }
    for name, deps in wanted.items():
        got = {dep: spec["condition"] for dep, spec in svc[name]["depends_on"].items()}
        assert deps.items() <= got.items(), (name, got)
    for name, spec in svc.items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "test" in svc[dep].get("healthcheck", {}), f"{name} waits on {dep}"
            elif condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for {dep} to exit"
            else:
                pytest.fail(f"{name} -> {dep}: unconditioned dependency {condition}")


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name in LONG_RUNNING:
        check = svc[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), name
        assert svc[name]["restart"] == "unless-stopped", name
    # Services that reuse the API image must not inherit its HTTP healthcheck.
    for name in ("worker-cpu", "worker-gpu"):
        assert "inspect ping" in " ".join(svc[name]["healthcheck"]["test"]), name
    assert "/healthz" in " ".join(svc["api"]["healthcheck"]["test"])


def test_gpu_worker_reserves_an_nvidia_gpu_and_takes_one_job(compose: dict[str, Any]) -> None:
    gpu = services(compose)["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["command"] == ["lethe", "worker", "-Q", "gpu", "-c", "1"]
    assert gpu["build"]["target"] == "worker"
    assert gpu["environment"]["LETHE_DEVICE"] == "cuda"


def test_light_services_run_the_api_image_without_torch(compose: dict[str, Any]) -> None:
    svc = services(compose)
    cpu = svc["worker-cpu"]["command"]
    assert cpu[:4] == ["lethe", "worker", "-Q", "default"]
    assert "gpu" not in cpu
    assert svc["beat"]["command"] == ["lethe", "beat"]
    for name in ("api", "migrate", "worker-cpu", "beat"):
        assert svc[name]["build"]["target"] == "api", name
    assert "deploy" not in svc["worker-cpu"]


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, spec in services(compose).items():
        for mount in spec.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            assert not source.startswith((".", "/", "~")), f"{name} bind-mounts {source}"
            assert source in declared, f"{name} uses undeclared volume {source}"
            used.add(source)
    assert used == declared
    mounts = {
        n: [m.split(":")[1] for m in s.get("volumes", [])] for n, s in services(compose).items()
    }
    assert mounts["postgres"] == ["/var/lib/postgresql/data"]
    assert mounts["redis"] == ["/data"]
    assert mounts["minio"] == ["/data"]


def test_every_lethe_variable_is_a_real_setting(text: str, compose: dict[str, Any]) -> None:
    fields = {f"LETHE_{name.upper()}" for name in Settings.model_fields}
    mentioned = set(re.findall(r"\bLETHE_[A-Z0-9_]+\b", text))
    assert mentioned, "the compose file configures Lethe through LETHE_* variables"
    assert mentioned - fields == set(), "not settings: the service would silently ignore them"
    for name, spec in services(compose).items():
        env = spec.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        assert {k for k in env if k.startswith("LETHE_")} <= fields, name


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    secret = re.compile(r"PASSWORD|SECRET|ACCESS_KEY_ID|ROOT_USER")
    for name, spec in services(compose).items():
        for key, value in (spec.get("environment") or {}).items():
            if secret.search(key):
                m = INTERPOLATION.fullmatch(str(value))
                assert m and m["op"] == ":?", f"{name}.{key} must come from ${{{key}:?}} (.env)"
        url = (spec.get("environment") or {}).get("LETHE_DATABASE_URL", "")
        if url:
            assert "${POSTGRES_PASSWORD:?" in url, name


def test_the_environment_is_a_valid_production_configuration(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Lethe service's environment, as compose substitutes it, passes the settings
    validator (production secret, visibility timeout > time limit + margins)."""
    for name in ("migrate", "api", "worker-gpu", "worker-cpu", "beat"):
        env = {
            k: interpolate(str(v), REQUIRED_VARS)
            for k, v in services(compose)[name]["environment"].items()
        }
        with monkeypatch.context() as m:
            for key in [k for k in os.environ if k.startswith("LETHE_")]:
                m.delenv(key)
            for key, value in env.items():
                m.setenv(key, value)
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.env == "production"
        assert not settings.embedded
        assert settings.resolved_store_url.startswith("s3://")
        assert settings.secret_key.get_secret_value() == REQUIRED_VARS["LETHE_SECRET_KEY"]
        assert settings.database_url.startswith("postgresql+psycopg://lethe:pg-")


def test_signing_services_get_the_opendsr_certificate(compose: dict[str, Any]) -> None:
    """In production OpenDSR refuses a self-signed pair: the API (responses) and the
    workers (callbacks) read a mounted key and certificate."""
    declared = set(compose["secrets"])
    for name in ("api", "worker-cpu", "worker-gpu"):
        spec = services(compose)[name]
        env = spec["environment"]
        mounted = {f"/run/secrets/{s}" for s in spec["secrets"]}
        assert set(spec["secrets"]) <= declared
        assert {env["LETHE_OPENDSR_KEY_PATH"], env["LETHE_OPENDSR_CERTIFICATE_PATH"]} <= mounted


def test_missing_secrets_refuse_to_start(text: str) -> None:
    required = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] == ":?"}
    assert required == set(REQUIRED_VARS)


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_validates() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env.update(REQUIRED_VARS)
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
