"""Long work as jobs: submitted by a request, run by the service's job runner under a lease.

A scan, an evaluation gate or a large export can take from seconds to hours, so the request
that asks for one only records a job (`202 Accepted` with the job's `Location`) and returns.
A job runner (`govern jobs run`; `govern serve` starts one beside the web workers) claims it
with a conditional update, renews its lease while it reports progress, and records the result
or the error. A runner that dies leaves a lapsed lease: the job goes back to the queue, or
fails once its attempts are spent, so no job is orphaned.

Jobs live in the same table as training jobs (`training_jobs`, column `kind`); training jobs
are claimed by workers outside the service over the API, these only by the runner.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from governance.audit.service import Actor, record
from governance.db import utcnow
from governance.errors import NotFound
from governance.training.models import JobKind, JobState, TrainingJob

LEASE_SECONDS = 60
MAX_ATTEMPTS = 2
# The files export jobs write, by format: suffix and media type.
EXPORT_FORMATS = {
    "bundle": ("tar.gz", "application/gzip"),
    "jsonl": ("jsonl", "application/x-ndjson"),
    "csv": ("csv", "text/csv"),
    # An evidence pack for an auditor or regulator (governance/audit/evidence.py).
    "evidence": ("tar.gz", "application/gzip"),
}


def export_file(home: Path, uid: str, fmt: str) -> Path:
    """Where the export job `uid` writes its file (owner-only, under GOVERNANCE_HOME)."""
    return home / "exports" / "jobs" / f"{uid}.{EXPORT_FORMATS[fmt][0]}"


def submit(
    session: Session,
    kind: str,
    subject: str,
    domain: str,
    params: dict[str, Any],
    *,
    actor: Actor,
) -> TrainingJob:
    """Queue a job (audited) and commit; the runner takes it from here."""
    if kind not in JobKind.INTERNAL:
        raise ValueError(f"not a job the service runs itself: {kind}")
    job = TrainingJob(
        uid=uuid.uuid4().hex,
        kind=kind,
        subject=subject,
        domain=domain,
        requested_by=actor.principal,
        params=params,
        state=JobState.QUEUED,
        executor="runner",
        max_attempts=MAX_ATTEMPTS,
    )
    session.add(job)
    session.flush()
    record(
        session,
        actor,
        "job.submit",
        subject,
        domain,
        details={"job": job.uid, "kind": kind},
    )
    session.commit()
    return job


def get_job(session: Session, uid: str) -> TrainingJob:
    job = session.exec(select(TrainingJob).where(TrainingJob.uid == uid)).first()
    if job is None or job.kind not in JobKind.INTERNAL:
        raise NotFound(f"no job {uid}", details={"job": uid})
    return job


def requeue_lapsed(session: Session, now: dt.datetime | None = None) -> int:
    """Put running jobs whose runner stopped renewing back in the queue, or fail them."""
    now = now or utcnow()
    count = 0
    for job in session.exec(
        select(TrainingJob).where(
            TrainingJob.kind.in_(JobKind.INTERNAL),
            TrainingJob.state == JobState.RUNNING,
            TrainingJob.lease_expires_at < now,
        )
    ).all():
        final = job.attempt >= job.max_attempts
        count += session.execute(
            sa.update(TrainingJob)
            .where(TrainingJob.id == job.id, TrainingJob.attempt == job.attempt)
            .where(TrainingJob.state == JobState.RUNNING)
            .values(
                state=JobState.FAILED if final else JobState.QUEUED,
                error=f"the runner stopped on attempt {job.attempt}"
                + (" (the last)" if final else ""),
                finished_at=now if final else None,
            )
        ).rowcount
    session.commit()
    return count


def claim(
    session: Session,
    worker: str,
    kinds: tuple[str, ...] = JobKind.INTERNAL,
    lease_seconds: int = LEASE_SECONDS,
    uid: str | None = None,
) -> TrainingJob | None:
    """Claim a queued job of these kinds (or that one); a conditional update decides the race
    between runners.

    Fair shares: each kind and domain is a queue of its own. Runners take the head of the
    queue served least recently (never served first), so a burst of 600 exports delays a scan
    by at most one job per other queue, not by 600."""
    requeue_lapsed(session)
    jobs = TrainingJob.__table__
    position = (
        sa.func.row_number()
        .over(partition_by=(jobs.c.kind, jobs.c.domain), order_by=jobs.c.id)
        .label("position")
    )
    query = sa.select(jobs.c.id, jobs.c.kind, jobs.c.domain, position).where(
        jobs.c.kind.in_(kinds), jobs.c.state == JobState.QUEUED
    )
    if uid is not None:
        query = query.where(jobs.c.uid == uid)
    queued = query.subquery()
    served = (
        sa.select(jobs.c.kind, jobs.c.domain, sa.func.max(jobs.c.heartbeat_at).label("at"))
        .where(jobs.c.kind.in_(kinds), jobs.c.state != JobState.QUEUED)
        .group_by(jobs.c.kind, jobs.c.domain)
        .subquery()
    )
    same_queue = sa.and_(
        served.c.kind == queued.c.kind,
        sa.or_(
            served.c.domain == queued.c.domain,
            sa.and_(served.c.domain.is_(None), queued.c.domain.is_(None)),
        ),
    )
    candidates = (
        session.execute(
            sa.select(queued.c.id)
            .select_from(queued.outerjoin(served, same_queue))
            .order_by(
                queued.c.position,
                sa.case((served.c.at.is_(None), 0), else_=1),
                served.c.at,
                queued.c.id,
            )
            .limit(20)
        )
        .scalars()
        .all()
    )
    for job_id in candidates:
        won = take_queued(session, job_id, worker, lease_seconds, error=None)
        session.commit()
        if won:
            job = session.get(TrainingJob, job_id)
            session.refresh(job)
            return job
    return None


def take_queued(
    session: Session, job_id: int, worker: str, lease_seconds: int, **values: Any
) -> bool:
    """The claim itself, for every kind of job: a conditional update of a queued row, so of
    two workers exactly one changes it. Starts the next attempt under a fresh lease."""
    now = utcnow()
    return bool(
        session.execute(
            sa.update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.state == JobState.QUEUED)
            .values(
                state=JobState.RUNNING,
                attempt=TrainingJob.attempt + 1,
                worker=worker,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                **values,
            )
        ).rowcount
    )


def renew(
    session: Session,
    job: TrainingJob,
    progress: dict[str, Any] | None = None,
    lease_seconds: int = LEASE_SECONDS,
) -> bool:
    """Extend this attempt's lease (and record progress); False if the job moved on."""
    now = utcnow()
    values: dict[str, Any] = {
        "heartbeat_at": now,
        "lease_expires_at": now + dt.timedelta(seconds=lease_seconds),
    }
    if progress is not None:
        values["progress"] = {k: progress[k] for k in list(progress)[:20]}
    changed = session.execute(
        sa.update(TrainingJob)
        .where(
            TrainingJob.id == job.id,
            TrainingJob.attempt == job.attempt,
            TrainingJob.state == JobState.RUNNING,
        )
        .values(**values)
    ).rowcount
    session.commit()
    return bool(changed)


def finish(
    session: Session,
    job: TrainingJob,
    result: dict[str, Any],
    error: str | None = None,
    progress: dict[str, Any] | None = None,
) -> bool:
    """Record this attempt's outcome (and its last progress); False if the job had already
    moved on (its lease lapsed and another attempt took it)."""
    extra: dict[str, Any] = {"progress": progress} if progress else {}
    changed = session.execute(
        sa.update(TrainingJob)
        .where(
            TrainingJob.id == job.id,
            TrainingJob.attempt == job.attempt,
            TrainingJob.state == JobState.RUNNING,
        )
        .values(
            state=JobState.FAILED if error else JobState.SUCCEEDED,
            result=result,
            error=error[:1000] if error else None,
            finished_at=utcnow(),
            lease_expires_at=None,
            **extra,
        )
    ).rowcount
    session.commit()
    return bool(changed)


def job_read(job: TrainingJob) -> dict[str, Any]:
    """What a caller sees of a job: state, progress, result; never its parameters' secrets
    (there are none: parameters name the subject only)."""
    return {
        "job": job.uid,
        "kind": job.kind,
        "subject": job.subject,
        "domain": job.domain,
        "state": job.state,
        "attempt": job.attempt,
        "progress": job.progress or {},
        "result": job.result or {},
        "error": job.error,
        "requested_by": job.requested_by,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "location": f"/api/v1/jobs/{job.uid}",
    }


def erase_results(session: Session, subject: str) -> int:
    """Replace the results of every job run on `subject` (a crypto-shredded dataset version)
    by a note that they were erased; the job, its state and its times stay. The count."""
    jobs = session.exec(select(TrainingJob).where(TrainingJob.subject == subject)).all()
    for job in jobs:
        job.result = {"erased": f"{subject} was deleted; what this job derived from it is gone"}
        session.add(job)
    return len(jobs)
