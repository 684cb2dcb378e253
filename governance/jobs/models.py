"""What the API says about a job."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class JobStatus(BaseModel):
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
