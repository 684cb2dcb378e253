"""HTTP API of jobs: the status of long work a request started (`202` + `Location`)."""

from __future__ import annotations

from flask import send_file
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from governance import runtime
from governance.db import get_session
from governance.errors import Conflict, NotFound
from governance.jobs import access, service
from governance.jobs.models import JobStatus
from governance.training.models import JobKind, JobState
from governance.views_common import ERROR_RESPONSES, SECURITY, download

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


@bp.get("/<uid>", responses={200: JobStatus})
def show_job(path: JobPath):
    """A job's state, progress and result; readable by whoever may read its subject."""
    return access.readable_job(get_session(), path.uid)


@bp.get(
    "/<uid>/file",
    responses={
        200: download(
            "The file a finished export job wrote (CSV, JSON lines, or a bundle)",
            "text/csv",
            "application/x-ndjson",
            "application/gzip",
        )
    },
)
def job_file(path: JobPath):
    """Download what a finished export job wrote; only its requester may."""
    job = access.readable_job(get_session(), path.uid)
    if job["kind"] != JobKind.EXPORT or job["state"] != JobState.SUCCEEDED:
        raise Conflict(
            f"job {path.uid} has no file to download (it is a {job['kind']} job, {job['state']})",
            details={"job": path.uid, "state": job["state"]},
        )
    fmt = job["result"]["format"]
    target = service.export_file(runtime.current().home, path.uid, fmt)
    if not target.is_file():
        raise NotFound("the export's file is gone", details={"job": path.uid})
    return send_file(
        target,
        mimetype=service.EXPORT_FORMATS[fmt][1],
        as_attachment=True,
        download_name=f"audit-export.{service.EXPORT_FORMATS[fmt][0]}",
    )
