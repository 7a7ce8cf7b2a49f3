"""The `lethe` command line: serve, worker, beat, migrate, seed-demo, demo, keys, store, bench."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from app.core.config import get_settings
from app.observability.logging import configure_logging
from lethe.cli import client as client_cli
from lethe.cli.database import existing_database

app = typer.Typer(
    help="Lethe: GDPR erasure for trained PyTorch classifiers.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
store_app = typer.Typer(help="Check the model store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
for _name, _sub in (
    ("requests", client_cli.requests_app),
    ("versions", client_cli.versions_app),
    ("models", client_cli.models_app),
    ("audit", client_cli.audit_app),
    ("architectures", client_cli.architectures_app),
):
    _sub.info.no_args_is_help = True
    app.add_typer(_sub, name=_name)


def _logging() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


@app.command()
def migrate() -> None:
    """Apply database migrations (Alembic upgrade head)."""
    from app.core.migrate import upgrade

    upgrade(get_settings().resolved_database_url)
    typer.echo("database is at the latest migration")


@app.command("seed-demo")
def seed_demo() -> None:
    """Train and register the demo model `digits-cnn` unless it exists."""
    from lethe.demo import seed_demo as seed
    from workers.runtime import build_runtime

    _logging()
    created = seed(build_runtime(get_settings()))
    typer.echo("demo model digits-cnn registered" if created else "demo model already present")


def _create_key(name: str, scopes: list[str], models: list[str] | None) -> str:
    from app.auth.service import create_key
    from app.core.db import session_scope

    factory = existing_database(get_settings())
    from app.audit import service as audit

    with session_scope(factory, None) as session:
        row, key = create_key(session=session, name=name, scopes=scopes, models=models)
        audit.append(
            session=session,
            type="key.created",
            actor="cli",
            subject=f"key:{row.prefix}",
            data={"name": name, "scopes": row.scopes},
        )
    return key


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who the key is for")],
    scope: Annotated[list[str], typer.Option(help="repeat for several scopes")],
    model: Annotated[list[str] | None, typer.Option(help="limit to these models")] = None,
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    typer.echo(_create_key(name, scope, model or None))


@keys_app.command("list")
def keys_list() -> None:
    """List keys (prefix, name, scopes, revoked) without secrets."""
    from app.auth.service import list_keys
    from app.core.db import session_scope

    factory = existing_database(get_settings())
    with session_scope(factory, None) as session:
        for k in list_keys(session=session):
            typer.echo(
                json.dumps(
                    {
                        "prefix": k.prefix,
                        "name": k.name,
                        "scopes": k.scopes,
                        "models": k.models,
                        "revoked": k.revoked_at is not None,
                    }
                )
            )


@keys_app.command("revoke")
def keys_revoke(prefix: str) -> None:
    """Revoke a key by its prefix (the part after `lethe_`)."""
    from app.audit import service as audit
    from app.auth.service import revoke_key
    from app.core.db import session_scope

    factory = existing_database(get_settings())
    with session_scope(factory, None) as session:
        revoke_key(session=session, prefix=prefix)
        audit.append(session=session, type="key.revoked", actor="cli", subject=f"key:{prefix}")
    typer.echo(f"key {prefix} revoked")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(help="uvicorn processes (distributed mode)")] = 1,
) -> None:
    """Serve the API (with the in-process worker when no broker is configured)."""
    import uvicorn

    settings = get_settings()
    if settings.embedded and workers != 1:
        raise typer.BadParameter("the embedded default runs one process; set LETHE_BROKER_URL")
    _logging()
    uvicorn.run(
        "lethe.asgi:build_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        access_log=False,  # the app logs each request as JSON, with its request id
    )


@app.command()
def demo(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Everything for a first look: migrate, seed the demo model, print the demo key, serve.

    The demo key is kept in LETHE_DATA_DIR/demo-api-key and printed again on every run
    while it works; a new one replaces (and revokes) it only when it does not."""
    from app.core.db import make_engine, make_session_factory
    from lethe.demo import demo_key

    settings = get_settings()
    url = f"http://{host or settings.host}:{port or settings.port}"
    typer.echo(f"==> migrating the database ({settings.data_dir / 'lethe.db'} by default)")
    migrate()
    typer.echo("==> the demo model digits-cnn (trained and registered on the first run)")
    seed_demo()
    factory = make_session_factory(make_engine(settings.resolved_database_url))
    demo = demo_key(factory, settings.data_dir)
    if demo.reused:
        about = f"the same key as before, kept in {settings.data_dir / 'demo-api-key'}"
    else:
        about = "new" + (
            f"; {len(demo.revoked)} earlier demo key(s) revoked" if demo.revoked else ""
        )
    typer.echo(
        f"\n==> Lethe is starting on {url} (API description: {url}/docs)\n"
        f"Demo API key (admin): {demo.key}  ({about})\n"
        f"  export LETHE_URL={url}\n  export LETHE_KEY={demo.key}\n",
    )
    sys.stdout.flush()
    serve(host=host, port=port, workers=1)


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="comma-separated queues")
    ] = "gpu,default",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="1 per GPU")] = 1,
    beat: Annotated[bool, typer.Option(help="also run the periodic reaper")] = False,
    name: Annotated[str | None, typer.Option(help="node name (default: celery@host)")] = None,
) -> None:
    """Run a Celery worker (needs LETHE_BROKER_URL)."""
    settings = get_settings()
    if settings.embedded:
        raise typer.BadParameter("set LETHE_BROKER_URL (e.g. redis://localhost:6379/0) first")
    import importlib.util

    from app.core.store import open_settings_store
    from lethe.cli.database import existing_database
    from lethe.specs import publish_specs
    from models_store import StoreError
    from workers.celery_app import celery_app

    factory = existing_database(settings)
    try:  # creates a missing bucket when allowed, as /readyz does
        open_settings_store(settings).ping()
    except StoreError as exc:
        typer.echo(f"lethe: the model store is not usable: {exc}", err=True)
        raise typer.Exit(1) from None
    if importlib.util.find_spec("torch") is not None:
        # The API checks uploaded checkpoints against the architectures this engine knows.
        publish_specs(factory)
    argv = [
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if name:
        argv += ["-n", f"{name}@%h"]
    if beat:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["-B", "-s", str(settings.data_dir / "celerybeat-schedule")]
    celery_app.worker_main(argv)


@app.command()
def beat() -> None:
    """Run Celery beat: periodic housekeeping (reap, schedule, seal, purge, callbacks).

    Its schedule file is LETHE_DATA_DIR/celerybeat-schedule, never the working directory."""
    from workers.celery_app import celery_app

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = str(settings.data_dir / "celerybeat-schedule")
    celery_app.start(["beat", "--loglevel", "INFO", "--schedule", schedule])


@app.command("bench-storage")
def bench_storage(
    json_path: Annotated[str | None, typer.Option("--json", help="write the report here")] = None,
) -> None:
    """Bytes each new version adds to the store: head-only methods versus a full copy."""
    from benchmarks.storage import main

    main(json_path)


@store_app.command("verify")
def store_verify() -> None:
    """Re-hash every blob of every version; exit 1 if any is missing or corrupt."""
    from app.core.store import open_settings_store
    from lethe.cli.store_check import check_versions

    settings = get_settings()
    factory = existing_database(settings)
    checked, problems = check_versions(session_factory=factory, store=open_settings_store(settings))
    for p in problems:
        typer.echo(f"{p.model} v{p.version} ({p.checkpoint_sha256}): {p.problem}", err=True)
    bad = len({(p.model, p.version) for p in problems})
    typer.echo(f"{checked} version(s) checked, {bad} with problems")
    if problems:
        raise typer.Exit(1)


@store_app.command("gc")
def store_gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be deleted; delete nothing")
    ] = False,
) -> None:
    """Delete blobs that no manifest and no model references (puts that crashed part-way).

    Run it while no registration or job is writing to the store: a put writes its blobs
    first and its manifest last."""
    from app.core.db import make_engine, make_session_factory
    from app.core.store import open_settings_store
    from lethe.cli.store_check import collect_garbage

    settings = get_settings()
    factory = make_session_factory(make_engine(settings.resolved_database_url))
    removal = collect_garbage(
        session_factory=factory, store=open_settings_store(settings), dry_run=dry_run
    )
    verb = "would delete" if dry_run else "deleted"
    for digest in removal.blobs:
        typer.echo(f"{verb} blob {digest}")
    typer.echo(f"{verb} {len(removal.blobs)} unreferenced blob(s), {removal.bytes} bytes")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,  # --help goes to the benchmark's own parser, which documents it
)
def bench(ctx: typer.Context) -> None:
    """Benchmark unlearning methods against retraining (all options: `lethe bench --help`)."""
    from unlearning.bench import main

    raise typer.Exit(main(list(ctx.args)) or 0)


if __name__ == "__main__":
    app()
