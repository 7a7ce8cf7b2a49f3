"""Prometheus metrics: HTTP requests counted in the middleware; the domain figures (queue
depth, overdue requests, job durations) computed from the database at scrape time, so
every API process reports the same truth and nothing drifts across restarts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.audit.service import pending_count
from app.core.db import utcnow
from app.erasure_requests.models import FINAL_STATUSES, ErasureRequest, RequestStatus
from app.jobs.models import Job, JobStatus
from app.registry.models import Model

JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class DomainCollector(Collector):
    def __init__(self, session_factory: sessionmaker[Session]):
        self.session_factory = session_factory

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        open_statuses = [s for s in RequestStatus if s not in FINAL_STATUSES]
        with self.session_factory() as s:
            by_status = dict(
                s.execute(
                    select(ErasureRequest.status, func.count()).group_by(ErasureRequest.status)
                ).all()
            )
            overdue = s.execute(
                select(Model.name, func.count())
                .select_from(ErasureRequest)
                .join(Model, Model.id == ErasureRequest.model_id)
                .where(ErasureRequest.status.in_(open_statuses), ErasureRequest.due_at < now)
                .group_by(Model.name)
            ).all()
            jobs = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            durations = s.execute(
                select(Job.status, Job.started_at, Job.finished_at).where(
                    Job.status.in_([JobStatus.succeeded, JobStatus.failed]),
                    Job.started_at.is_not(None),
                    Job.finished_at.is_not(None),
                )
            ).all()
            audit_pending = pending_count(session=s)
        g = GaugeMetricFamily(
            "lethe_erasure_requests", "Erasure requests by status", labels=["status"]
        )
        for status in RequestStatus:
            g.add_metric([status.value], by_status.get(status, 0))
        yield g
        g = GaugeMetricFamily(
            "lethe_erasure_requests_overdue",
            "Open erasure requests past their Art. 12(3) deadline",
            labels=["model"],
        )
        for name, count in overdue:
            g.add_metric([name], count)
        yield g
        yield GaugeMetricFamily(
            "lethe_erasure_requests_overdue_total",
            "Open erasure requests past their deadline, all models",
            value=sum(c for _, c in overdue),
        )
        g = GaugeMetricFamily("lethe_jobs", "Jobs by status", labels=["status"])
        for job_status in JobStatus:
            g.add_metric([job_status.value], jobs.get(job_status, 0))
        yield g
        yield GaugeMetricFamily(
            "lethe_queue_depth",
            "Requests waiting for a worker (received or queued)",
            value=by_status.get(RequestStatus.received, 0) + by_status.get(RequestStatus.queued, 0),
        )
        yield GaugeMetricFamily(
            "lethe_audit_pending_events",
            "Audit events stored but not yet sealed into the hash chain (alert if it grows)",
            value=audit_pending,
        )
        h = HistogramMetricFamily(
            "lethe_job_duration_seconds", "Wall time of finished jobs", labels=["status"]
        )
        for job_status in (JobStatus.succeeded, JobStatus.failed):
            seconds = [
                (end - start).total_seconds()
                for st, start, end in durations
                if st == job_status and start is not None and end is not None
            ]
            buckets: list[tuple[str, float]] = [
                (str(b), float(sum(1 for x in seconds if x <= b))) for b in JOB_BUCKETS
            ]
            buckets.append(("+Inf", float(len(seconds))))
            h.add_metric([job_status.value], buckets, sum_value=sum(seconds))
        yield h


class Metrics:
    """One registry per app, so several apps (tests) never collide on global names."""

    def __init__(self, session_factory: Any):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "lethe_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lethe_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            registry=self.registry,
        )
        self.registry.register(DomainCollector(session_factory))
