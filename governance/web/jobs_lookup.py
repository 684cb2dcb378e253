"""Jobs as a caller may see them, and the `202 Accepted` answer of a request that starts one.

A job is readable by whoever may read its subject (`params.object` in the job's domain);
anyone else is told it does not exist, and the decision is logged either way.
"""

from __future__ import annotations

from typing import Any

from flask import Response, send_file
from sqlmodel import Session

from governance import runtime
from governance.authz.policy import UNSCOPED_DOMAIN
from governance.errors import Conflict, NotFound
from governance.jobs import service
from governance.jobs.models import Job, JobKind, JobState
from governance.web.guard import check, current_actor, current_principal, log_event, mark_checked

DOWNLOAD_NAMES = {"evidence": "evidence-pack"}


def readable_job(session: Session, uid: str) -> dict[str, Any]:
    try:
        job = service.get_job(session, uid)
    except NotFound:
        check("read", "job", UNSCOPED_DOMAIN, {"job": uid})
        raise
    if job.params.get("owner_only"):
        # An export holds entries of the domains its requester may export: only they may
        # follow it and download its file.
        mine = job.requested_by == current_principal().name
        log_event("read", f"job/{uid}", None, "allow" if mine else "deny", {"job": uid})
        mark_checked()
        if not mine:
            raise NotFound(f"no job {uid}", details={"job": uid})
    elif not check("read", job.params.get("object", "job"), job.domain or UNSCOPED_DOMAIN).allowed:
        raise NotFound(f"no job {uid}", details={"job": uid})
    return service.job_read(job)


def start(
    session: Session, kind: str, subject: str, domain: str, obj: str, params: dict[str, Any]
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a job for the current caller and answer 202 with where to follow it."""
    job: Job = service.submit(
        session,
        kind,
        subject,
        domain,
        {"object": obj, **params},
        actor=current_actor(),
        executor=runtime.current().job_executor,
    )
    return service.job_read(job), 202, {"Location": f"/api/v1/jobs/{job.uid}"}


def job_file(session: Session, uid: str) -> Response:
    """Send what a finished export job wrote; only its requester may (API and console)."""
    job = readable_job(session, uid)
    if job["kind"] != JobKind.EXPORT or job["state"] != JobState.SUCCEEDED:
        raise Conflict(
            f"job {uid} has no file to download (it is a {job['kind']} job, {job['state']})",
            details={"job": uid, "state": job["state"]},
        )
    fmt = job["result"]["format"]
    target = service.export_file(runtime.current().home, uid, fmt)
    if not target.is_file():
        raise NotFound("the export's file is gone", details={"job": uid})
    suffix, mimetype = service.EXPORT_FORMATS[fmt]
    return send_file(
        target,
        mimetype=mimetype,
        as_attachment=True,
        download_name=f"{DOWNLOAD_NAMES.get(fmt, 'audit-export')}.{suffix}",
    )
