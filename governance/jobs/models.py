"""Jobs of every kind (training, scans, evaluation gates, exports, policy reviews): one table,
one set of states, one lease."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import UTCDateTime, utcnow


class JobState:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobKind:
    """Training runs on workers outside the service (GPU hosts, over the API, with job
    tokens); the others run in the service's own job runners (`govern jobs run`, or Celery
    workers that hold the database)."""

    TRAIN = "train"
    SCAN = "scan"
    # One shard of a scan: any runner or worker takes it; the `scan` job reduces.
    SCAN_SHARD = "scan-shard"
    EVALUATE = "evaluate"
    EXPORT = "export"
    # The evidence of a proposed policy (lint, tests, diff, replay), and its approval request.
    POLICY_REVIEW = "policy-review"
    INTERNAL = (SCAN, SCAN_SHARD, EVALUATE, EXPORT, POLICY_REVIEW)
    # Kinds whose attempt that fails unexpectedly (not a refusal) is tried again, up to
    # max_attempts, as a lapsed lease is: a shard is retried before it fails its scan.
    RETRIED = (SCAN_SHARD,)


class Job(SQLModel, table=True):
    """A job runs under a lease; a lapsed lease puts it back in the queue for another try.

    Each claim is a new attempt under a fresh lease. A training attempt also gets a new
    job-scoped token (only its hash is stored); a result or heartbeat is accepted only from
    the current attempt, so a worker that was presumed dead cannot complete the job twice.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_kind_state", "kind", "state"),
        # A claim reads the heads of the queues and when each was last served by index ranges
        # (governance/jobs/service.py `queue_heads`), however many jobs wait.
        sa.Index("ix_jobs_queue", "state", "kind", "domain", "id"),
        sa.Index("ix_jobs_served", "kind", "domain", "heartbeat_at"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=32, unique=True, nullable=False)
    kind: str = SQLField(default=JobKind.TRAIN, max_length=16, nullable=False)
    # A training job's model version; other kinds name their subject instead.
    version_id: int | None = SQLField(
        default=None, foreign_key="model_versions.id", nullable=True, unique=True
    )
    subject: str | None = SQLField(default=None, max_length=200)
    domain: str | None = SQLField(default=None, max_length=63)
    requested_by: str | None = SQLField(default=None, max_length=63)
    params: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    result: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    state: str = SQLField(max_length=16, nullable=False, index=True)
    # The deployment's executor when the job was queued: "local" (runners and workers poll
    # the table) or "celery" (a message announced it).
    executor: str = SQLField(max_length=16, nullable=False, default="local")
    attempt: int = SQLField(default=0, nullable=False)
    max_attempts: int = SQLField(default=3, nullable=False)
    worker: str | None = SQLField(default=None, max_length=200)
    token_hash: str | None = SQLField(default=None, max_length=64)
    lease_expires_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    heartbeat_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    progress: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    error: str | None = SQLField(default=None, max_length=1000)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class JobStatus(BaseModel):
    """What the API says about a job."""

    job: str
    kind: str
    subject: str | None
    domain: str | None
    state: str
    attempt: int
    progress: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    requested_by: str | None
    created_at: str | None
    finished_at: str | None
    location: str
