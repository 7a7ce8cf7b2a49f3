"""One settings class for the whole service, read from `LETHE_*` environment variables.

The embedded default needs nothing: a SQLite file and a filesystem store under
`LETHE_DATA_DIR`, and no broker (jobs run on an in-process worker). Setting
`LETHE_BROKER_URL` switches job execution to Celery workers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "lethe-development-secret-do-not-use-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LETHE_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str = ""
    """SQLAlchemy URL. Empty: a SQLite file `lethe.db` under data_dir."""
    broker_url: str | None = None
    """Celery broker (redis://...). Empty: embedded mode, jobs run in the API process."""
    store_url: str = ""
    """`file:///path` or `s3://bucket/prefix`. Empty: `store/` under data_dir."""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_create_bucket: bool = True
    """Create the store's bucket when it is missing (on the first readiness check or
    worker start); false where Lethe's credentials may not create buckets."""
    device: str = "auto"
    """torch device for unlearning: auto (cuda when available), cpu, cuda, cuda:1, ..."""
    feature_cache_dir: Path | None = None
    dataset_roots: str = ""
    """Folders (separated by the OS path separator, `:` on Linux) under which a model's
    dataset may be registered by reference (`location=/path/...`); the resolved path must
    lie under one of them. Empty: folder locations are refused (S3 prefixes of the
    configured endpoint still work)."""
    data_workers: int = Field(0, ge=0)
    """DataLoader worker processes that decode a dataset by reference (0: in the job's
    own process)."""
    torch_threads: int = Field(1, ge=0)
    """CPU threads for torch, and for the BLAS / OpenMP pools numpy and scipy use in the
    verification's fits, in a worker (0: the libraries' defaults, one thread per core).
    One is fastest for the small CPU models of the embedded default, which shares the
    machine with the API; on busy cores more threads wait on each other."""
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    """Keys the subject-identity hashes and signs callbacks. Must be set outside development."""

    callback_allowed_hosts: str = ""
    """Comma-separated host names, IP addresses or CIDR ranges that callback and webhook
    targets may use although they are internal (loopback, private, link-local, ...).
    Empty: only public addresses are called."""
    callback_max_attempts: int = Field(8, ge=1)
    callback_backoff_base_s: float = Field(10.0, gt=0)
    """Retry n of a callback waits about base * 2**(n-1) seconds (with jitter, capped)."""
    callback_backoff_max_s: float = Field(3600.0, gt=0)
    callback_timeout_s: float = Field(10.0, gt=0)
    max_webhooks_per_model: int = Field(20, ge=1)
    """Webhooks one model may have at a time (each event is sent to every one of them)."""
    opendsr_processor_domain: str = "localhost"
    """Sent as `X-OpenDSR-Processor-Domain`: the domain the OpenDSR certificate is issued to."""
    opendsr_key_path: Path | None = None
    opendsr_certificate_path: Path | None = None
    """PEM key (EC P-256 or RSA) and certificate signing OpenDSR responses and callbacks.
    Empty outside production: a self-signed pair generated once under data_dir/opendsr."""

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    batch_window_s: float = Field(0.0, ge=0)
    """Queued requests of one model wait this long to be batched into one job."""
    job_max_attempts: int = Field(3, ge=1)
    request_max_attempts: int = Field(3, ge=1)
    job_time_limit_s: int = Field(3600, ge=10)
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_timeout_s: float = Field(60.0, gt=0)
    housekeeping_interval_s: float = Field(
        10.0,
        gt=0,
        validation_alias=AliasChoices(
            "housekeeping_interval_s",
            "LETHE_HOUSEKEEPING_INTERVAL_S",
            "reaper_interval_s",  # the old name, still accepted
            "LETHE_REAPER_INTERVAL_S",
        ),
    )
    """How often housekeeping runs (`app.housekeeping`: reap stale jobs, schedule waiting
    requests, seal audit events, purge idempotency keys, deliver due callbacks), on
    Celery beat or the embedded worker's tick. `LETHE_REAPER_INTERVAL_S` is an alias."""
    audit_seal_interval_s: float = Field(1.0, gt=0)
    """Each API process seals pending audit events after every commit that stored some,
    and at least this often (events written by workers and the CLI)."""
    audit_checkpoint_interval_s: float = Field(60.0, gt=0)
    """Each API process signs a checkpoint of the audit log (when it grew) this often."""
    audit_signing_key_path: Path | None = None
    """Ed25519 PEM key signing audit checkpoints; keep it OFF the database host. Empty: one
    generated once at data_dir/audit/signing-key.pem."""
    audit_checkpoint_retain_days: int = Field(0, ge=0)
    """S3 store: Object Lock (compliance) retention of each checkpoint, in days (the bucket
    must have Object Lock enabled); 0: a conditional put only."""
    retired_retention_days: float = Field(0.0, ge=0)
    """A version retired because a later one erased data it was trained on keeps its
    blobs this long (0: housekeeping deletes them at its next run); blobs a live version
    shares are never deleted."""
    visibility_timeout_s: int = Field(7200, ge=60)
    """Redis redelivers an unacknowledged job after this; longer than any job may run."""

    unlearning_method: str | None = None
    """Force one engine method for every job (e.g. `retrain`); empty: chosen by scope
    (a fully erased class → `lau`, individual samples → `lau-calibrated`)."""
    policy_min_class_ua: float = 99.0
    """A forgotten class must end with at least this UA (points) or the job fails."""
    policy_max_ta_drop: float = 2.0
    """Test accuracy may drop at most this many points below the parent version."""
    policy_fallback_method: str | None = None
    """Method to try when the verification gate refuses a result (e.g. `retrain`)."""
    policy_min_probe_ua: float | None = Field(None, ge=0, le=100)
    """Require depth (class and mixed scope; empty: off). After the gate accepts a result, a
    linear probe trained on its penultimate embeddings of the retain set plus held-out
    samples of the forgotten classes is scored on the forget set; below this UA (points) the
    backbone still separates the forgotten samples, and `policy_depth_method` runs on the
    parent instead. The version records the probe, the method used and why
    (`metrics.depth`). Set it from a retrain's own probe_UA on the model's data
    (BENCHMARKS.md, "Depth on demand": 18-52 on MNIST-1D, 2-6 on digits)."""
    policy_depth_method: str = "retrain"
    """What a job escalates to under `policy_min_probe_ua`: measured, only retraining reaches
    a retrain's probe_UA (deeper `lau` cuts, SalUn and random-label leave it at 0-8)."""

    max_in_flight_requests: int = Field(8, ge=1)
    """Requests one API process serves at once; more are answered 503 with Retry-After at
    once (shedding). Keep it at or below the database pool (10 + 20 overflow)."""
    max_ids_per_request: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(4 * 1024**3, ge=1024)
    """Body limit of model registration (multipart: checkpoint and training-set npz)."""
    idempotency_ttl_s: int = Field(24 * 3600, ge=60)
    """How long a response stored under an `Idempotency-Key` is replayed."""
    idempotency_lease_s: float = Field(30.0, gt=0)
    """An attempt holding an `Idempotency-Key` blocks retries (409) this long at most: a
    retry after an attempt that died (a crashed API process) runs the request again, or
    replays its response if that attempt committed."""
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.env == "production" and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("LETHE_SECRET_KEY must be set to a real secret in production")
        if self.visibility_timeout_s <= self.job_hard_time_limit_s + 60:
            raise ValueError(
                "LETHE_VISIBILITY_TIMEOUT_S must exceed LETHE_JOB_TIME_LIMIT_S by more than "
                "two minutes, or Redis would hand a running job to a second worker"
            )
        if self.heartbeat_timeout_s <= 2 * self.heartbeat_interval_s:
            raise ValueError("LETHE_HEARTBEAT_TIMEOUT_S must exceed twice the heartbeat interval")
        return self

    @property
    def job_hard_time_limit_s(self) -> int:
        """Celery kills a task this long after its soft limit asked it to stop."""
        return self.job_time_limit_s + 60

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'lethe.db').resolve()}"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or (self.data_dir / "store").resolve().as_uri()

    @property
    def resolved_feature_cache_dir(self) -> Path:
        return self.feature_cache_dir or self.data_dir / "features"

    @property
    def resolved_dataset_roots(self) -> list[Path]:
        import os

        return [Path(p).resolve() for p in self.dataset_roots.split(os.pathsep) if p.strip()]

    @property
    def embedded(self) -> bool:
        return not self.broker_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
