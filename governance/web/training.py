"""HTTP API for workers: claim a job, fetch its bundle, heartbeat, send the result.

Claims need a principal allowed to `claim` `job` in `system`; everything after a claim uses
the job-scoped token the claim returned (api.JOB_ENDPOINTS), valid for that attempt only.
"""

from __future__ import annotations

import logging
import tempfile

from flask import Response, current_app, g, request, send_file
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from governance import runtime
from governance.audit.service import Actor
from governance.authz.policy import SYSTEM_DOMAIN
from governance.db import get_session
from governance.domains.models import Domain
from governance.errors import PayloadTooLarge
from governance.families.models import ModelFamily, ModelVersion
from governance.jobs import service as jobs
from governance.jobs.models import Job, JobKind
from governance.training import service
from governance.training.models import (
    ClaimRequest,
    ClaimResponse,
    Heartbeat,
    JobFailure,
    JobRead,
)
from governance.web.common import ERROR_RESPONSES, SECURITY, binary_body, download
from governance.web.guard import current_actor, get_authorizer, mark_checked, require

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "training",
    __name__,
    url_prefix="/api/v1/jobs",
    abp_tags=[Tag(name="training", description="Training jobs for workers")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


class JobPath(BaseModel):
    uid: str = Field(pattern=r"^[0-9a-f]{32}$")


def lease_seconds() -> int:
    return int(current_app.config.get("JOB_LEASE_SECONDS", service.LEASE_SECONDS))


def job_from_token(uid: str) -> tuple[Job, Actor]:
    """Authenticate the job token of this request; the job is the only thing it opens."""
    job = service.job_for_token(get_session(), uid, g.job_token)
    mark_checked()
    return job, Actor(f"job:{uid}", g.get("request_id"), get_authorizer().policy.hash)


def job_read(job: Job) -> dict:
    return JobRead(
        job=job.uid,
        **job.model_dump(
            include={"state", "attempt", "worker", "lease_expires_at", "progress", "error"}
        ),
    ).model_dump(mode="json")


@bp.post("/claim", responses={200: ClaimResponse, 204: None})
def claim(body: ClaimRequest):
    """Claim the oldest queued job; 204 when there is none."""
    require("claim", "job", SYSTEM_DOMAIN)
    session = get_session()
    claimed = service.claim(
        session,
        body.worker,
        actor=current_actor(),
        lease_seconds=lease_seconds(),
        job_uid=body.job,
    )
    if claimed is None:
        return Response(status=204)
    job, token = claimed
    version = session.get(ModelVersion, job.version_id)
    family = session.get(ModelFamily, version.family_id)
    return ClaimResponse(
        job=job.uid,
        attempt=job.attempt,
        token=token,
        lease_seconds=lease_seconds(),
        family=family.name,
        version=version.number,
    ).model_dump()


@bp.get(
    "/<uid:uid>/bundle",
    responses={200: download("The training bundle (gzipped tar)", "application/gzip")},
)
def job_bundle(path: JobPath):
    """The training bundle (gzipped tar): sanitized records and the spec, nothing else."""
    job, _actor = job_from_token(path.uid)
    rt = runtime.current()
    scratch = rt.home / "tmp"
    # Written to an owner-only file that is gone once closed, then streamed from it: the
    # process never holds the bundle, nor a version, in memory.
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = tempfile.TemporaryFile(dir=scratch)  # noqa: SIM115 (the response closes it)
    try:
        service.build_bundle(get_session(), rt.keyring, rt.store, job, out, scratch)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return send_file(out, mimetype="application/gzip", download_name="bundle.tar.gz")


@bp.post("/<uid:uid>/heartbeat", responses={200: JobRead})
def job_heartbeat(path: JobPath, body: Heartbeat):
    """Extend the lease and report progress."""
    job, _actor = job_from_token(path.uid)
    return job_read(service.heartbeat(get_session(), job, body.progress, lease_seconds()))


@bp.post(
    "/<uid:uid>/result",
    responses={200: JobRead},
    openapi_extensions=binary_body(
        "application/gzip",
        "A gzipped tar of adapter/, metrics.json and manifest.json (SHA-256 of every file).",
    ),
)
def job_result(path: JobPath):
    """Upload the result (gzipped tar of adapter/, metrics.json, manifest.json)."""
    job, actor = job_from_token(path.uid)
    limit = service.RESULT_MAX_BYTES
    request.max_content_length = limit
    payload = request.stream.read(limit + 1)
    if len(payload) > limit:
        raise PayloadTooLarge("the result is larger than the limit", details={"limit": limit})
    version = service.accept_result(
        get_session(), runtime.current().store, job, payload, actor=actor
    )
    evaluate_next(version, actor)
    return job_read(job)


def evaluate_next(version: ModelVersion, actor: Actor) -> None:
    """Queue the evaluation gate of a fresh result; the job runner runs it, not this request."""
    session = get_session()
    family = session.get(ModelFamily, version.family_id)
    domain = session.get(Domain, family.domain_id)
    jobs.submit(
        session,
        JobKind.EVALUATE,
        f"model-version/{version.uid}",
        domain.name,
        {"object": f"model/{family.name}", "family": family.name, "version": version.number},
        actor=actor,
        executor=runtime.current().job_executor,
    )


@bp.post("/<uid:uid>/fail", responses={200: JobRead})
def job_fail(path: JobPath, body: JobFailure):
    """Report a failed attempt; the job is retried while attempts remain."""
    job, actor = job_from_token(path.uid)
    return job_read(service.fail_job(get_session(), job, body.error, actor=actor))
