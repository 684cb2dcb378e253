"""What training workers send and receive over the API (the jobs themselves are
governance.jobs.models.Job, kind `train`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
