"""HTTP API of jobs: the status of long work a request started (`202` + `Location`)."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from governance.db import get_session
from governance.jobs.models import JobStatus
from governance.web import jobs_lookup as access
from governance.web.common import ERROR_RESPONSES, SECURITY, download

bp = APIBlueprint(
    "jobs",
    __name__,
    url_prefix="/api/v1/jobs",
    abp_tags=[Tag(name="jobs", description="Scans, evaluations and exports running as jobs")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


class JobPath(BaseModel):
    uid: str = Field(pattern=r"^[0-9a-f]{32}$")


@bp.get("/<uid:uid>", responses={200: JobStatus})
def show_job(path: JobPath):
    """A job's state, progress and result; readable by whoever may read its subject."""
    return access.readable_job(get_session(), path.uid)


@bp.get(
    "/<uid:uid>/file",
    responses={
        200: download(
            "The file a finished export job wrote (CSV, JSON lines, a bundle or an evidence pack)",
            "text/csv",
            "application/x-ndjson",
            "application/gzip",
        )
    },
)
def job_file(path: JobPath):
    """Download what a finished export job wrote; only its requester may."""
    return access.job_file(get_session(), path.uid)
