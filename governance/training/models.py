"""Training jobs: one per model version, claimed by workers under a lease."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
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
    tokens); the others run in the service's own job runner (`govern jobs run`)."""

    TRAIN = "train"
    SCAN = "scan"
    EVALUATE = "evaluate"
    EXPORT = "export"
    # The evidence of a proposed policy (lint, tests, diff, replay), and its approval request.
    POLICY_REVIEW = "policy-review"
    INTERNAL = (SCAN, EVALUATE, EXPORT, POLICY_REVIEW)


class TrainingJob(SQLModel, table=True):
    """A job (training, scan, evaluation, export) runs under a lease; a lapsed lease puts it
    back in the queue for another try.

    Each claim is a new attempt with a new job-scoped token (only its hash is stored); a
    result or heartbeat is accepted only from the current attempt's token, so a worker that
    was presumed dead cannot complete the job a second time.
    """

    __tablename__ = "training_jobs"
    __table_args__ = (sa.Index("ix_training_jobs_kind_state", "kind", "state"),)

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


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: str = Field(min_length=1, max_length=200, description="host:pid of the worker")
    job: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{32}$", description="Claim this job only (Celery)."
    )


class ClaimResponse(BaseModel):
    job: str
    attempt: int
    token: str = Field(description="Job-scoped token: heartbeats, the bundle and the result.")
    lease_seconds: int
    family: str
    version: int


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    progress: dict[str, Any] = Field(default_factory=dict)


class JobFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: str = Field(min_length=1, max_length=1000)


class JobRead(BaseModel):
    job: str
    state: str
    attempt: int
    worker: str | None
    lease_expires_at: dt.datetime | None
    progress: dict[str, Any]
    error: str | None
