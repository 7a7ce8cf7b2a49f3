from __future__ import annotations

import base64
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from app.audit import service as audit
from app.auth.service import Client
from app.core.deps import SessionDep, require
from app.core.errors import Forbidden, NotFound, RangeNotSatisfiable
from app.models import service
from app.models.models import Alias, Model, ModelVersion, TrainingSample
from app.models.schemas import AliasRead, ModelList, ModelRead, VersionList, VersionRead

router = APIRouter(prefix="/v1/models", tags=["models"])
Reader = Annotated[Client, Depends(require("models:read"))]


def _model(session: SessionDep, name: str, client: Reader) -> Model:
    model = service.get_model(session=session, name=name)
    if not client.may_use_model(model.name):
        raise Forbidden(f"this API key may not act on model {model.name!r}")
    return model


ModelDep = Annotated[Model, Depends(_model)]


def _read(session: SessionDep, model: Model) -> ModelRead:
    latest = service.latest_version(session=session, model_id=model.id)
    return ModelRead(
        name=model.name,
        architecture=model.architecture,
        num_classes=model.num_classes,
        dataset_id=model.dataset_id,
        auto_promote=model.auto_promote,
        latest_version=latest.number if latest else 0,
        training_samples=service.count_samples(session=session, model_id=model.id),
        created_at=model.created_at,
    )


def _version(model: Model, v: ModelVersion, erased: list[str] | None = None) -> VersionRead:
    return VersionRead.model_validate(
        {
            **{c: getattr(v, c) for c in VersionRead.model_fields if hasattr(v, c)},
            "model": model.name,
            "erased_sample_ids": erased,
        }
    )


@router.get("", response_model=ModelList)
def list_models(session: SessionDep, client: Reader) -> ModelList:
    return ModelList(
        items=[
            _read(session, m)
            for m in service.list_models(session=session)
            if client.may_use_model(m.name)
        ]
    )


@router.get("/{name}", response_model=ModelRead)
def get_model(session: SessionDep, model: ModelDep) -> ModelRead:
    return _read(session, model)


@router.get("/{name}/versions", response_model=VersionList)
def list_versions(session: SessionDep, model: ModelDep) -> VersionList:
    return VersionList(
        items=[_version(model, v) for v in service.list_versions(session=session, model=model)]
    )


@router.get("/{name}/versions/{number}", response_model=VersionRead)
def get_version(number: int, session: SessionDep, model: ModelDep) -> VersionRead:
    v = service.get_version(session=session, model=model, number=number)
    erased = list(
        session.scalars(
            select(TrainingSample.sample_id)
            .where(
                TrainingSample.model_id == model.id, TrainingSample.erased_in_version == v.number
            )
            .order_by(TrainingSample.sample_id)
        )
    )
    return _version(model, v, erased)


@router.get("/{name}/aliases/{alias}", response_model=AliasRead)
def get_alias(alias: str, session: SessionDep, model: ModelDep) -> AliasRead:
    row = session.get(Alias, (model.id, alias))
    if row is None:
        raise NotFound(f"model {model.name!r} has no alias {alias!r}")
    return AliasRead(
        model=model.name, alias=alias, version=row.version_number, updated_at=row.updated_at
    )


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range as [start, end); None to serve the whole file."""
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(size - int(last), 0), size
    if start >= size or start >= end:
        raise RangeNotSatisfiable(
            f"range {header!r} is outside the checkpoint's {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


@router.get(
    "/{name}/versions/{number}/checkpoint",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "the safetensors checkpoint",
        },
        206: {"description": "the requested byte range"},
        304: {"description": "unchanged (If-None-Match matched the ETag)"},
    },
)
def download_checkpoint(
    number: int,
    request: Request,
    session: SessionDep,
    model: ModelDep,
    client: Reader,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    v = service.get_version(session=session, model=model, number=number)
    etag = f'"{v.checkpoint_sha256}"'
    digest = base64.b64encode(bytes.fromhex(v.checkpoint_sha256)).decode()
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "X-Checkpoint-Sha256": v.checkpoint_sha256,
        "Content-Disposition": f'attachment; filename="{model.name}-v{v.number}.safetensors"',
    }
    if if_none_match and (
        if_none_match.strip() == "*"
        or etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    ):
        return Response(status_code=304, headers=headers)
    store = request.app.state.store
    manifest = store.get_manifest(v.checkpoint_sha256)
    span = _parse_range(range_, v.checkpoint_size) if range_ else None
    audit.append(
        session=session,
        type="checkpoint.downloaded",
        actor=client.actor,
        subject=f"model:{model.name}",
        data={"version": v.number, "range": range_},
    )
    session.commit()
    if span is None:
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
        headers["Content-Length"] = str(v.checkpoint_size)
        return StreamingResponse(
            store.open_checkpoint(manifest), headers=headers, media_type="application/octet-stream"
        )
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{v.checkpoint_size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        store.open_checkpoint(manifest, start=start, end=end),
        status_code=206,
        headers=headers,
        media_type="application/octet-stream",
    )


@router.get("/{name}/samples/count")
def count_training_samples(session: SessionDep, model: ModelDep) -> dict[str, int]:
    total = service.count_samples(session=session, model_id=model.id)
    erased = len(service.erased_sample_ids(session=session, model_id=model.id))
    return {"total": total, "erased": erased}
