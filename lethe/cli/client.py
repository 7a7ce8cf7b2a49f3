"""`lethe requests|versions|models|audit|architectures ...`: the API through the client, and
the audit chain straight from the database."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from lethe.client import ApiError, ChecksumMismatch, LetheClient

Url = Annotated[str, typer.Option("--url", envvar="LETHE_URL", help="the Lethe API")]
Key = Annotated[str, typer.Option("--key", envvar="LETHE_KEY", help="API key (lethe_...)")]
DEFAULT_URL = "http://127.0.0.1:8000"

requests_app = typer.Typer(help="Submit, read, wait for and cancel erasure requests.")
versions_app = typer.Typer(help="List and download model versions.")
models_app = typer.Typer(help="Register models.")
audit_app = typer.Typer(help="Verify and export the audit chain (reads the database).")
architectures_app = typer.Typer(help="Publish architecture tensor specs for the API.")


def make_http(url: str) -> httpx.Client:
    """The HTTP client the commands use (tests replace it with the in-process app)."""
    return httpx.Client(base_url=url.rstrip("/"), timeout=60.0)


def _client(url: str, key: str) -> LetheClient:
    return LetheClient(url, key, http=make_http(url))


def _out(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _fail(exc: Exception) -> typer.Exit:
    if isinstance(exc, ApiError):
        typer.echo(json.dumps(exc.problem, indent=2), err=True)
    elif isinstance(exc, httpx.TransportError):
        typer.echo(_unreachable(exc), err=True)
    else:
        typer.echo(str(exc), err=True)
    return typer.Exit(1)


def _unreachable(exc: httpx.TransportError) -> str:
    """Which URL could not be reached, why, and what to do."""
    try:
        url = exc.request.url
        where = f"{url.scheme}://{url.netloc.decode()}"
        what = f" ({exc.request.method} {url.path})"
    except RuntimeError:  # an error raised before a request existed
        where, what = "the Lethe API", ""
    reason = str(exc) or exc.__class__.__name__
    return (
        f"lethe: could not reach the Lethe API at {where}{what}: {reason}\n"
        f"Is Lethe running there? `make run` (or `lethe serve`) serves {DEFAULT_URL} by "
        "default; set LETHE_URL (or pass --url) to the address it printed."
    )


@requests_app.command("submit")
def requests_submit(
    model: Annotated[str, typer.Option(help="model name")],
    sample_id: Annotated[list[str] | None, typer.Option(help="repeat for several")] = None,
    ids_file: Annotated[Path | None, typer.Option(help="one sample id per line")] = None,
    subject: Annotated[
        list[str] | None, typer.Option(help="TYPE:VALUE, e.g. email:ada@example.org")
    ] = None,
    subject_request_id: Annotated[str | None, typer.Option()] = None,
    callback_url: Annotated[list[str] | None, typer.Option()] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Submit an erasure request (sample ids or subject identities)."""
    ids = list(sample_id or [])
    if ids_file:
        ids += [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    subjects = []
    for s in subject or []:
        kind, _, value = s.partition(":")
        if not value:
            raise typer.BadParameter(f"{s!r}: write TYPE:VALUE", param_hint="--subject")
        subjects.append({"identity_type": kind, "identity_value": value})
    if bool(ids) == bool(subjects):
        raise typer.BadParameter("give sample ids (--sample-id/--ids-file) or --subject")
    try:
        with _client(url, key) as lethe:
            _out(
                lethe.submit(
                    model,
                    sample_ids=ids or None,
                    subject_identities=subjects or None,
                    subject_request_id=subject_request_id,
                    callback_urls=callback_url,
                )
            )
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from None


@requests_app.command("get")
def requests_get(request_id: str, url: Url = DEFAULT_URL, key: Key = "") -> None:
    """Show a request: status, deadline, job, result version."""
    try:
        with _client(url, key) as lethe:
            _out(lethe.get(request_id))
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from None


@requests_app.command("wait")
def requests_wait(
    request_id: str,
    timeout: Annotated[float, typer.Option(help="seconds")] = 3600.0,
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 2.0,
    progress: Annotated[bool, typer.Option(help="show the job's phase and progress")] = True,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Wait until the request ends, drawing its job's phase and percentage (on stderr);
    print the request (stdout) and where to download the new version; exit 1 unless it
    completed."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    err = Console(stderr=True)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        "{task.fields[phase]}",
        TimeElapsedColumn(),
        console=err,
        disable=not progress,
    )
    try:
        with _client(url, key) as lethe, bar:
            task = bar.add_task(f"request {request_id[:8]}", total=100, phase="")

            def show(req: dict[str, Any]) -> None:
                phase, done = req["status"], 0.0
                if req.get("job_id") and req["status"] in ("running", "completed"):
                    job = lethe.job(req["job_id"])
                    phase, done = f"{req['status']}: {job['phase']}", float(job["progress"])
                bar.update(task, completed=done, phase=phase)

            req = lethe.wait(request_id, timeout=timeout, interval=interval, on_poll=show)
    except (ApiError, httpx.HTTPError, TimeoutError) as exc:
        raise _fail(exc) from None
    _out(req)
    if req["status"] != "completed":
        reason = f": {req['status_reason']}" if req.get("status_reason") else ""
        err.print(f"request {req['status']}{reason}", soft_wrap=True, markup=False)
        raise typer.Exit(1)
    if req.get("children") is not None:  # a fan-out parent: one line per model
        for child in req["children"] or []:
            err.print(
                f"erased in {child['model']} version {child['result_version']}",
                soft_wrap=True,
                markup=False,
            )
        if not req["children"]:
            err.print("no data held: no model holds this subject", soft_wrap=True, markup=False)
        return
    model, number = req["model"], req["result_version"]
    err.print(
        f"erased in {model} version {number}; download it with "
        f"`lethe versions download {model} {number}` "
        f"(GET {url.rstrip('/')}/v1/models/{model}/versions/{number}/checkpoint)",
        soft_wrap=True,
        markup=False,
    )


@requests_app.command("cancel")
def requests_cancel(request_id: str, url: Url = DEFAULT_URL, key: Key = "") -> None:
    """Cancel a request that no job has started on."""
    try:
        with _client(url, key) as lethe:
            _out(lethe.cancel(request_id))
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from None


@versions_app.command("list")
def versions_list(model: str, url: Url = DEFAULT_URL, key: Key = "") -> None:
    """A model's versions: number, parent, method, erased count, sha256."""
    try:
        with _client(url, key) as lethe:
            for v in lethe.list_versions(model):
                typer.echo(
                    json.dumps(
                        {
                            k: v[k]
                            for k in (
                                "number",
                                "parent_number",
                                "method",
                                "erased_count",
                                "checkpoint_sha256",
                                "checkpoint_size",
                                "created_at",
                            )
                        }
                    )
                )
    except (ApiError, httpx.HTTPError) as exc:
        raise _fail(exc) from None


@versions_app.command("download")
def versions_download(
    model: str,
    version: int,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Download a version's checkpoint and verify its sha256."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    dest = output or Path(f"{model}-v{version}.safetensors")
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not progress,
        transient=True,
    )
    try:
        with _client(url, key) as lethe, bar:
            task = bar.add_task(dest.name, total=None)
            digest = lethe.download(
                model,
                version,
                dest,
                on_progress=lambda done, total: bar.update(
                    task, completed=done, total=total or None
                ),
            )
    except (ApiError, httpx.HTTPError, ChecksumMismatch) as exc:
        raise _fail(exc) from None
    typer.echo(f"{dest}  sha256 {digest} verified")


@models_app.command("register")
def models_register(
    name: Annotated[str, typer.Option()],
    architecture: Annotated[str, typer.Option(help="e.g. torchvision:resnet18")],
    checkpoint: Annotated[
        Path, typer.Option(help="state dict: safetensors, or .pt (torch.save(model.state_dict()))")
    ],
    training_set: Annotated[
        Path | None, typer.Option(help="npz: x, y, ids, x_val, y_val, ids_val[, subjects]")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="or a built-in dataset id")] = None,
    dataset_params: Annotated[str | None, typer.Option(help="JSON object")] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            help="with --location: CSV or JSON Lines (sample_id, label, split[, subject_ref, "
            "uri]); with --dataset: npz of ids, y[, subjects] (computed if omitted)"
        ),
    ] = None,
    location: Annotated[
        str | None,
        typer.Option(help="dataset by reference: s3://bucket/prefix or a server folder"),
    ] = None,
    layout: Annotated[
        str | None, typer.Option(help="with --location: image-folder, image-files, webdataset")
    ] = None,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help='with --location: JSON {"resize", "center_crop", "mean", "std", "channels"} '
            "or a torchvision weights preset name (ResNet18_Weights.IMAGENET1K_V1)"
        ),
    ] = None,
    num_classes: Annotated[int | None, typer.Option()] = None,
    head_module: Annotated[
        str | None,
        typer.Option(help="torchvision: the logits layer's module path, e.g. classifier.3"),
    ] = None,
    auto_promote: Annotated[bool, typer.Option(help="new versions move `production`")] = True,
    subject_identity_type: Annotated[str, typer.Option()] = "user_id",
    wait: Annotated[
        bool, typer.Option(help="wait for the registration job, drawing its phase and progress")
    ] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 3600.0,
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 2.0,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Register a model (checkpoint + training set) as version 1.

    Every registration runs a job (checkpoint and data checked, version 1 measured); the
    command waits for it (unless --no-wait) with its phase and percentage on stderr, prints
    the model (stdout) and where to download version 1; exit 1 if the model was rejected."""
    manifest_bytes = manifest.read_bytes() if manifest else None
    if dataset and manifest_bytes is None:
        manifest_bytes = builtin_manifest(dataset, json.loads(dataset_params or "{}"))
    if preprocess and not preprocess.lstrip().startswith("{"):
        preprocess = json.dumps({"preset": preprocess})  # a bare preset name
    try:
        with _client(url, key) as lethe:
            model = lethe.register_model(
                name,
                architecture,
                checkpoint,
                training_set=training_set,
                dataset=dataset,
                dataset_params=dataset_params,
                manifest=manifest_bytes,
                num_classes=num_classes,
                auto_promote=auto_promote,
                subject_identity_type=subject_identity_type,
                location=location,
                layout=layout,
                preprocess=preprocess,
                head_module=head_module,
            )
            if model.get("status") == "validating" and wait:
                model = _wait_for_model(lethe, model, timeout=timeout, interval=interval)
    except (ApiError, httpx.HTTPError, TimeoutError) as exc:
        raise _fail(exc) from None
    _out(model)
    _say_where(model, url)


def _wait_for_model(
    lethe: LetheClient, model: dict[str, Any], *, timeout: float, interval: float
) -> dict[str, Any]:
    """Poll the model until its registration ends, drawing phase and percent on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        "{task.fields[phase]}",
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with bar:
        task = bar.add_task(f"registering {model['name']}", total=100, phase="queued")

        def show(m: dict[str, Any]) -> None:
            reg = m.get("registration") or {}
            bar.update(task, completed=float(reg.get("progress", 0.0)), phase=reg.get("phase", ""))

        return lethe.wait_for_model(model["name"], timeout=timeout, interval=interval, on_poll=show)


def _say_where(model: dict[str, Any], url: str) -> None:
    """On stderr: the version and where to download it, or why the model was rejected."""
    from rich.console import Console

    err = Console(stderr=True)
    name = model["name"]
    if model.get("status") == "rejected":
        err.print(
            f"model {name} rejected: {model.get('status_reason')}", soft_wrap=True, markup=False
        )
        raise typer.Exit(1)
    if model.get("status") == "validating":
        err.print(
            f"model {name} is validating; follow it with GET {url.rstrip('/')}/v1/models/{name}",
            soft_wrap=True,
            markup=False,
        )
        return
    number = model["latest_version"]
    err.print(
        f"{name} version {number} is ready; download it with "
        f"`lethe versions download {name} {number}` "
        f"(GET {url.rstrip('/')}/v1/models/{name}/versions/{number}/checkpoint)",
        soft_wrap=True,
        markup=False,
    )


def builtin_manifest(dataset: str, params: dict[str, Any]) -> bytes:
    """The training split of a built-in dataset as an npz of ids, y, subjects (engine)."""
    import numpy as np

    from workers.pipeline import load_dataset

    ds = load_dataset(dataset, params)
    arrays: dict[str, Any] = {"ids": np.array(list(ds.train.ids)), "y": ds.train.y.numpy()}
    if ds.train.subjects:
        arrays["subjects"] = np.array([s or "" for s in ds.train.subjects])
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _factory() -> Any:
    from app.core.config import get_settings
    from lethe.cli.database import existing_database

    return existing_database(get_settings())


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="a signed checkpoint (JSON, as GET /v1/audit/checkpoint returns it) to check "
            "the log against, besides the newest one in the store",
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="Ed25519 public key PEM (GET /v1/audit/public-key); default: that of "
            "LETHE_AUDIT_SIGNING_KEY_PATH",
        ),
    ] = None,
) -> None:
    """Walk the chain, then check the log against the newest signed checkpoint in the store
    and the one given; print the verdict; exit 1 if anything does not hold."""
    from app.audit import checkpoints
    from app.core.config import get_settings
    from app.core.store import open_settings_store

    settings = get_settings()
    factory = _factory()  # first: no deployment here is said as such, before any key is looked for
    try:
        key = checkpoints.public_key(pem_file=public_key, settings=settings)
        supplied = checkpoints.Checkpoint.parse(checkpoint.read_bytes()) if checkpoint else None
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    with factory() as session:
        found = checkpoints.verify_log(session, open_settings_store(settings), key, supplied)
        session.commit()  # keep what verify sealed
    v = found.chain
    _out(
        {
            "ok": found.ok,
            "checked": v.checked,
            "head_seq": v.head_seq,
            "first_broken_seq": v.first_broken_seq,
            "reason": found.reason,
            "checkpoints_checked": found.checked,
            "newest_checkpoint_size": found.newest.size if found.newest else None,
        }
    )
    if not found.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: stdout")] = None,
    after: Annotated[int, typer.Option(help="only events with seq > this")] = 0,
) -> None:
    """Write the chain as JSON lines (one event per line, seq order), hashes included."""
    from app.audit import service as audit

    out = output.open("w") if output else sys.stdout
    count = 0
    try:
        with _factory()() as session:
            audit.seal(session=session)
            session.commit()
            while True:
                rows = audit.list_events(session=session, after=after, limit=1000)
                if not rows:
                    break
                for ev in rows:
                    out.write(
                        json.dumps(
                            {
                                "seq": ev.seq,
                                "created_at": audit._stamp(ev.created_at),
                                "type": ev.type,
                                "actor": ev.actor,
                                "subject": ev.subject,
                                "data": ev.data,
                                "prev_hash": ev.prev_hash,
                                "hash": ev.hash,
                            },
                            sort_keys=True,
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
                    count += 1
                after = rows[-1].seq
    finally:
        if output:
            out.close()
    typer.echo(f"{count} events exported", err=True)


@architectures_app.command("publish")
def architectures_publish() -> None:
    """Store every engine architecture's tensor spec (the API checks uploads against it)."""
    from lethe.specs import publish_specs

    typer.echo(" ".join(publish_specs(_factory())))
