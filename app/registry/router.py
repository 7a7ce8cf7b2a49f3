from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.responses import StreamingResponse

from app.audit import service as audit
from app.auth.service import Client
from app.core.errors import BadRequest, NotFound
from app.http.deps import SessionDep, SettingsDep, require
from app.registry import downloads, registration, service
from app.registry.models import Model, ModelVersion
from app.registry.schemas import (
    MAX_VERSION,
    AliasHistory,
    AliasMoveRead,
    AliasRead,
    AliasUpdate,
    ModelList,
    ModelRead,
    RegistrationRead,
    SampleList,
    SampleRead,
    VersionList,
    VersionRead,
)

router = APIRouter(prefix="/v1/models", tags=["models"])
Reader = Annotated[Client, Depends(require("models:read"))]


def _model(session: SessionDep, name: str, client: Reader) -> Model:
    model = service.get_model(session=session, name=name)
    if not client.may_use_model(model.name):
        # another portal's model does not exist for this key
        raise NotFound(f"no model named {name!r}; GET /v1/models lists the registered ones")
    return model


ModelDep = Annotated[Model, Depends(_model)]
Writer = Annotated[Client, Depends(require("models:write"))]
ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
VersionNumber = Annotated[int, Path(ge=1, le=MAX_VERSION, description="version number")]


def _writable_model(session: SessionDep, name: str, client: Writer) -> Model:
    model = service.get_model(session=session, name=name)
    if not client.may_use_model(model.name):
        # another portal's model does not exist for this key
        raise NotFound(f"no model named {name!r}; GET /v1/models lists the registered ones")
    return model


WritableModelDep = Annotated[Model, Depends(_writable_model)]


def _read(session: SessionDep, model: Model) -> ModelRead:
    latest = service.latest_version(session=session, model_id=model.id)
    job = service.registration_job(session=session, model=model)
    return ModelRead(
        name=model.name,
        status=model.status,
        status_reason=model.status_reason,
        registration=None
        if job is None
        else RegistrationRead(
            job_id=job.id, status=job.status.value, phase=job.phase, progress=job.progress
        ),
        architecture=model.architecture,
        head_module=model.head_module,
        num_classes=model.num_classes,
        dataset_id=model.dataset_id,
        auto_promote=model.auto_promote,
        latest_version=latest.number if latest else 0,
        training_samples=service.count_samples(session=session, model_id=model.id),
        subject_identity_types=[model.subject_identity_type] if model.subject_identity_type else [],
        created_at=model.created_at,
    )


def _version(
    model: Model, v: ModelVersion, erased: list[tuple[str, int]] | None = None
) -> VersionRead:
    """`erased`: (sample id, erased-in-version) of the lineage up to `v`, on the one-version
    route; the cumulative list and this version's new ones are both cut from it."""
    return VersionRead.model_validate(
        {
            **{c: getattr(v, c) for c in VersionRead.model_fields if hasattr(v, c)},
            "model": model.name,
            "status": "live" if v.retired_at is None else "retired",
            "erased_sample_ids": None if erased is None else [s for s, _ in erased],
            "new_sample_ids": None if erased is None else [s for s, n in erased if n == v.number],
        }
    )


@router.get("", response_model=ModelList)
def list_models(session: SessionDep, client: Reader) -> ModelList:
    """Registered models this key may use, with their latest version."""
    return ModelList(
        items=[
            _read(session, m)
            for m in service.list_models(session=session)
            if client.may_use_model(m.name)
        ]
    )


@router.post(
    "",
    status_code=202,
    response_model=ModelRead,
    responses={
        202: {
            "description": "accepted: the model is `validating` while its registration job "
            "checks the checkpoint and the data and measures version 1; `GET` the model "
            "(the `Location` header) until `status` is `ready` or `rejected`",
            "headers": {
                "Location": {
                    "description": "the model, `/v1/models/{name}`",
                    "schema": {"type": "string"},
                }
            },
        }
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "encoding": {
                        "checkpoint": {"contentType": "application/octet-stream"},
                        "training_set": {"contentType": "application/octet-stream"},
                    }
                }
            }
        }
    },
)
def register_model(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    client: Writer,
    name: Annotated[
        str, Form(description="unique model name", examples=["faces-resnet"], min_length=1)
    ],
    architecture: Annotated[
        str,
        Form(
            description="architecture id: a registered one (`digits-cnn`), "
            "`torchvision:<builder>`, or an entry-point plug-in's",
            examples=["digits-cnn"],
            min_length=1,
        ),
    ],
    checkpoint: Annotated[
        UploadFile,
        File(
            description="safetensors state dict, or a `.pt` state dict (torch.save zip; read "
            "by the registration job with weights_only=True)"
        ),
    ],
    training_set: Annotated[
        UploadFile | None,
        File(description="npz: x, y, ids, x_val, y_val, ids_val, optional subjects"),
    ] = None,
    dataset: Annotated[str | None, Form(description="or a built-in dataset id")] = None,
    dataset_params: Annotated[str | None, Form(description="JSON object")] = None,
    manifest: Annotated[
        UploadFile | None,
        File(
            description="with `dataset`: npz of ids, y, optional subjects; with `location`: "
            "CSV or JSON Lines of sample_id, label, split[, subject_ref, uri]"
        ),
    ] = None,
    location: Annotated[
        str | None,
        Form(
            description="dataset by reference: s3://bucket/prefix (the configured endpoint) "
            "or a folder under LETHE_DATASET_ROOTS",
        ),
    ] = None,
    layout: Annotated[
        Literal["image-folder", "image-files", "webdataset"] | None,
        Form(description="with `location`: how a manifest row finds its file"),
    ] = None,
    preprocess: Annotated[
        str | None,
        Form(
            description='with `location`: JSON {"channels", "resize", "center_crop", "mean", '
            '"std"} or {"preset": "ResNet18_Weights.IMAGENET1K_V1"}'
        ),
    ] = None,
    head_module: Annotated[
        str | None,
        Form(
            description="with a `torchvision:` architecture: the dotted module path of the "
            "logits layer (an nn.Linear with `num_classes` outputs), e.g. `classifier.3`; "
            "found automatically when omitted. Registers as a job (202)",
            examples=["classifier.3"],
            pattern=registration.HEAD_MODULE_PATTERN,
            max_length=256,
        ),
    ] = None,
    num_classes: Annotated[int | None, Form(ge=2, le=1_000_000)] = None,
    auto_promote: Annotated[bool, Form(description="new versions move `production`")] = True,
    subject_identity_type: Annotated[
        Literal["email", "user_id", "phone_number", "customer_id", "controller_id"], Form()
    ] = "user_id",
) -> ModelRead:
    """Register a model: architecture, training set and checkpoint become version 1.

    What the API can check without torch is checked now (422, nothing stored): the name,
    the npz or manifest, labels against `num_classes`, a safetensors header against the
    architecture's tensors. Then the answer is 202 with the model `validating`: a
    registration job checks the checkpoint (a `.pt` state dict is read only there) and the
    data (every row's file, for a dataset by reference), warms the feature cache and
    measures version 1's metrics; the model becomes `ready`, or `rejected` with the reason
    (GET the model for phase and percent). Erasure requests for a `validating` model are
    accepted and wait. Raw subject identities are stored only as keyed hashes.
    """
    model = registration.register(
        session=session,
        store=request.app.state.store,
        settings=settings,
        client=client,
        upload=registration.Upload(
            name=name,
            architecture=architecture,
            checkpoint=checkpoint.file,
            training_set=training_set.file if training_set else None,
            dataset=dataset,
            dataset_params=dataset_params,
            manifest=manifest.file if manifest else None,
            num_classes=num_classes,
            auto_promote=auto_promote,
            subject_identity_type=subject_identity_type,
            location=location,
            layout=layout,
            preprocess=preprocess,
            head_module=head_module,
        ),
    )
    response.headers["Location"] = f"/v1/models/{model.name}"
    return _read(session, model)


@router.get("/{name}", response_model=ModelRead)
def get_model(session: SessionDep, model: ModelDep) -> ModelRead:
    """One model: architecture, dataset, training-set size, latest version."""
    return _read(session, model)


@router.get("/{name}/versions", response_model=VersionList)
def list_versions(session: SessionDep, model: ModelDep) -> VersionList:
    """Every version of a model, oldest first, with lineage and checksums."""
    return VersionList(
        items=[_version(model, v) for v in service.list_versions(session=session, model=model)]
    )


@router.get("/{name}/versions/{number}", response_model=VersionRead)
def get_version(number: VersionNumber, session: SessionDep, model: ModelDep) -> VersionRead:
    """One version's manifest, including the sample ids it erased."""
    v = service.get_version(session=session, model=model, number=number)
    erased = service.erased_up_to(session=session, model_id=model.id, number=v.number)
    return _version(model, v, erased)


@router.get("/{name}/aliases/{alias}", response_model=AliasRead)
def get_alias(alias: str, session: SessionDep, model: ModelDep) -> AliasRead:
    """The version an alias (e.g. `production`) points at."""
    row = service.get_alias(session=session, model=model, alias=alias)
    return AliasRead(
        model=model.name, alias=alias, version=row.version_number, updated_at=row.updated_at
    )


@router.put("/{name}/aliases/{alias}", response_model=AliasRead)
def put_alias(
    alias: Annotated[str, Path(pattern=ALIAS_PATTERN)],
    body: AliasUpdate,
    session: SessionDep,
    model: WritableModelDep,
    client: Writer,
) -> AliasRead:
    """Point an alias at a version (creating it if needed); every move is kept in history."""
    row = service.set_alias(
        session=session, model=model, alias=alias, number=body.version, actor=client.actor
    )
    return AliasRead(
        model=model.name, alias=alias, version=row.version_number, updated_at=row.updated_at
    )


@router.get("/{name}/aliases/{alias}/history", response_model=AliasHistory)
def get_alias_history(alias: str, session: SessionDep, model: ModelDep) -> AliasHistory:
    """Every move of an alias, oldest first."""
    rows = service.alias_history(session=session, model=model, alias=alias)
    return AliasHistory(
        model=model.name, alias=alias, items=[AliasMoveRead.model_validate(r) for r in rows]
    )


_CHECKPOINT = "/{name}/versions/{number}/checkpoint"
# what GET and HEAD of a checkpoint answer alike besides 200/206 (downloads.checkpoint_headers)
_CHECKPOINT_REFUSALS: dict[int | str, dict[str, Any]] = {
    304: {"description": "unchanged (If-None-Match matched the ETag)"},
    410: {"description": "retired: a later version erased data it was trained on"},
    416: {"description": "the Range lies outside the checkpoint (see Content-Range)"},
}


@router.get(
    _CHECKPOINT,
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "the safetensors checkpoint",
        },
        206: {"description": "the requested byte range"},
        **_CHECKPOINT_REFUSALS,
    },
)
def download_checkpoint(
    number: VersionNumber,
    request: Request,
    session: SessionDep,
    model: ModelDep,
    client: Reader,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Download a version's safetensors checkpoint.

    Strong `ETag` = the sha256; `If-None-Match` → 304; one `Range: bytes=a-b` → 206 with
    `Content-Range` (416 outside the file); `Repr-Digest` (RFC 9530) on full responses.
    A retired version answers 410 Gone naming the version that replaced it.
    """
    v = service.get_version(session=session, model=model, number=number)
    status, headers, span = downloads.checkpoint_headers(model, v, range_, if_none_match)
    if status == 304:
        return Response(status_code=304, headers=headers)
    store = request.app.state.store
    manifest = store.get_manifest(v.checkpoint_sha256)
    audit.append(
        session=session,
        type="checkpoint.downloaded",
        actor=client.actor,
        subject=f"model:{model.name}",
        data={"version": v.number, "range": range_},
    )
    session.commit()
    start, end = span or (0, None)
    return StreamingResponse(
        store.open_checkpoint(manifest, start=start, end=end),
        status_code=status,
        headers=headers,
    )


@router.head(
    _CHECKPOINT,
    response_class=Response,
    responses={
        200: {"description": "the checkpoint's headers: ETag, Content-Length, Repr-Digest"},
        206: {"description": "the headers of the requested byte range"},
        **_CHECKPOINT_REFUSALS,
    },
)
def checkpoint_headers(
    number: VersionNumber,
    session: SessionDep,
    model: ModelDep,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The download's headers without its body (size, ETag = sha256, Repr-Digest), as GET
    answers them; not audited as a download, since no byte of the checkpoint is sent."""
    v = service.get_version(session=session, model=model, number=number)
    status, headers, _ = downloads.checkpoint_headers(model, v, range_, if_none_match)
    return Response(status_code=status, headers=headers)


def _sample_cursor(sample_id: str) -> str:
    return base64.urlsafe_b64encode(sample_id.encode()).decode().rstrip("=")


def _after_cursor(cursor: str) -> str:
    """The sample id a cursor names: any unpadded, non-empty base64url text is a position
    after which to list (`SAMPLE_CURSOR_PATTERN` in the OpenAPI document)."""
    if not cursor:  # never issued: a cursor names the last sample id of a page
        raise BadRequest("the cursor is not one this API returned; start without it")
    try:
        if len(cursor) % 4 == 1 or "+" in cursor or "/" in cursor:
            raise ValueError(cursor)
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        # Sample ids hold no NUL (app.core.text), so listing after the text up to a NUL
        # lists exactly what listing after the whole text would; the database never sees one.
        return raw.decode(errors="replace").split("\x00", 1)[0]
    except ValueError:  # binascii.Error is a ValueError
        raise BadRequest("the cursor is not one this API returned; start without it") from None


@router.get("/{name}/samples", response_model=SampleList, operation_id="models-list-samples")
def list_samples(
    session: SessionDep,
    model: ModelDep,
    cursor: str | None = None,
    erased: Annotated[
        bool | None, Query(description="only erased (true) or only still learned (false)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SampleList:
    """The model's training samples, by sample id: label, whether a data subject is
    recorded for it (never the subject), and the version that erased it; cursor paginated.
    These are the ids an erasure request's `sample_ids` name."""
    after = _after_cursor(cursor) if cursor is not None else None
    rows = service.list_samples(
        session=session, model_id=model.id, after=after, limit=limit + 1, erased=erased
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return SampleList(
        items=[
            SampleRead(
                sample_id=r.sample_id,
                label=r.label,
                has_subject=r.subject_ref is not None,
                erased_in_version=r.erased_in_version,
            )
            for r in rows
        ],
        next_cursor=_sample_cursor(rows[-1].sample_id) if more and rows else None,
    )


@router.get("/{name}/samples/count")
def count_training_samples(session: SessionDep, model: ModelDep) -> dict[str, int]:
    """How many training samples the model has, and how many are erased."""
    total = service.count_samples(session=session, model_id=model.id)
    erased = len(service.erased_sample_ids(session=session, model_id=model.id))
    return {"total": total, "erased": erased}
