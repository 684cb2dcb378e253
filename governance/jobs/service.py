"""Long work as jobs: submitted by a request, run by the service's job runner under a lease.

A scan, an evaluation gate or a large export can take from seconds to hours, so the request
that asks for one only records a job (`202 Accepted` with the job's `Location`) and returns.
A job runner (`govern jobs run`; `govern serve` starts one beside the web workers) claims it
with a conditional update, renews its lease while it reports progress, and records the result
or the error. A runner that dies leaves a lapsed lease: the job goes back to the queue, or
fails once its attempts are spent, so no job is orphaned.

Every kind of job lives in one table (`jobs`, column `kind`) under one lease engine (below);
training jobs are claimed by workers outside the service over the API
(governance/training/service.py), the others by the service's job runners.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from governance.audit.service import Actor, record
from governance.db import on_commit, utcnow
from governance.errors import NotFound
from governance.jobs.executors import Executor
from governance.jobs.models import Job, JobKind, JobState

LEASE_SECONDS = 60
MAX_ATTEMPTS = 2
# The files export jobs write, by format: suffix and media type.
EXPORT_FORMATS = {
    "bundle": ("tar.gz", "application/gzip"),
    "jsonl": ("jsonl", "application/x-ndjson"),
    "csv": ("csv", "text/csv"),
    # An evidence pack for an auditor or regulator (governance/flows/evidence.py).
    "evidence": ("tar.gz", "application/gzip"),
}


def export_file(home: Path, uid: str, fmt: str) -> Path:
    """Where the export job `uid` writes its file (owner-only, under GOVERNANCE_HOME)."""
    return home / "exports" / "jobs" / f"{uid}.{EXPORT_FORMATS[fmt][0]}"


def enqueue(session: Session, job: Job, executor: Executor) -> Job:
    """Queue a job: the only way work is queued. The row is added to the caller's
    transaction, and the executor is told of it (a Celery message) only once that
    transaction commits: a rolled-back request announces nothing, and no message ever names
    a job its workers cannot yet read."""
    job.state = JobState.QUEUED
    job.executor = executor.name
    session.add(job)
    session.flush()
    uid, kind = job.uid, job.kind
    on_commit(session, lambda: executor.submit(uid, kind))
    return job


def submit(
    session: Session,
    kind: str,
    subject: str,
    domain: str,
    params: dict[str, Any],
    *,
    actor: Actor,
    executor: Executor,
) -> Job:
    """Queue one of the service's own jobs (audited) in the caller's transaction; a runner
    takes it from here once that commits."""
    if kind not in JobKind.INTERNAL:
        raise ValueError(f"not a job the service runs itself: {kind}")
    job = enqueue(
        session,
        Job(
            uid=uuid.uuid4().hex,
            kind=kind,
            subject=subject,
            domain=domain,
            requested_by=actor.principal,
            params=params,
            state=JobState.QUEUED,
            max_attempts=MAX_ATTEMPTS,
        ),
        executor,
    )
    record(
        session,
        actor,
        "job.submit",
        subject,
        domain,
        details={"job": job.uid, "kind": kind},
    )
    return job


def get_job(session: Session, uid: str) -> Job:
    job = session.exec(select(Job).where(Job.uid == uid)).first()
    if job is None or job.kind not in JobKind.INTERNAL:
        raise NotFound(f"no job {uid}", details={"job": uid})
    return job


# --- the lease ----------------------------------------------------------------------------
# One engine for every kind: claim (a conditional update decides the race), renew, finish,
# release (a failed attempt: retried while attempts remain), and requeue what lapsed. A kind
# with its own bookkeeping when a job fails for good (training fails its model version) passes
# `on_final`.

OnFinal = Callable[[Session, Job, str], None]


def requeue_lapsed(
    session: Session,
    kinds: tuple[str, ...],
    now: dt.datetime | None = None,
    on_final: OnFinal | None = None,
) -> int:
    """Put running jobs of these kinds whose holder stopped renewing back in the queue, or
    fail them once their attempts are spent; commit. The count."""
    now = now or utcnow()
    count = 0
    for job in session.exec(
        select(Job).where(
            col(Job.kind).in_(kinds),
            Job.state == JobState.RUNNING,
            col(Job.lease_expires_at) < now,
        )
    ).all():
        error = f"the lease lapsed on attempt {job.attempt}"
        if release(session, job, error, now=now, on_final=on_final):
            count += 1
    session.commit()
    return count


def this_attempt(job: Job) -> sa.Update:
    """An update of this job's row that changes it only while this attempt still runs it: the
    condition every lease step after the claim is written under."""
    return sa.update(Job).where(
        col(Job.id) == job.id,
        col(Job.attempt) == job.attempt,
        col(Job.state) == JobState.RUNNING,
    )


def release(
    session: Session,
    job: Job,
    error: str,
    *,
    now: dt.datetime | None = None,
    on_final: OnFinal | None = None,
) -> bool:
    """End this attempt as failed: the job goes back to the queue while attempts remain, else
    it fails (and `on_final` does the kind's own bookkeeping). False if the attempt had
    already moved on. The caller commits."""
    now = now or utcnow()
    final = job.attempt >= job.max_attempts
    message = (error + (" (the last)" if final else ""))[:1000]
    changed = session.execute(
        this_attempt(job).values(
            state=JobState.FAILED if final else JobState.QUEUED,
            error=message,
            token_hash=None,
            lease_expires_at=None,
            finished_at=now if final else None,
        )
    ).rowcount
    if changed and final and on_final is not None:
        on_final(session, job, message)
    if changed and job in session:
        session.expire(job)
    return bool(changed)


def claim(
    session: Session,
    worker: str,
    kinds: tuple[str, ...] = JobKind.INTERNAL,
    lease_seconds: int = LEASE_SECONDS,
    uid: str | None = None,
    *,
    extra: Callable[[str], dict[str, Any]] | None = None,
    then: Callable[[Session, Job], None] | None = None,
    on_final: OnFinal | None = None,
) -> Job | None:
    """Claim a queued job of these kinds (or that one) and commit; None when there is none.

    Fair shares: each kind and domain is a queue of its own. Runners take the head of the
    queue served least recently (never served first), so a burst of 600 exports delays a scan
    by at most one job per other queue, not by 600. `extra(uid)` adds values to the claim (a
    training attempt's token hash); `then(session, job)` runs in the claim's transaction."""
    requeue_lapsed(session, kinds, on_final=on_final)
    candidates = [(c["id"], c["uid"]) for c in queue_heads(session, kinds, uid)]
    for job_id, job_uid in candidates:
        values = extra(job_uid) if extra is not None else {}
        if not take_queued(session, job_id, worker, lease_seconds, error=None, **values):
            session.rollback()
            continue
        job = session.get(Job, job_id)
        session.refresh(job)
        if then is not None:
            then(session, job)
        session.commit()
        return job
    return None


HEADS = 20


def queue_heads(
    session: Session, kinds: tuple[str, ...], uid: str | None = None
) -> list[dict[str, Any]]:
    """Up to HEADS queued jobs to try, fairest first: the heads of the queues (a kind and a
    domain), those of queues never served first, then those served least recently, then by
    age. Each query reads an index range, so a claim costs about the same with ten queued
    jobs or a hundred thousand (a version's scan shards, say)."""
    jobs = Job.__table__
    columns = (jobs.c.id, jobs.c.uid, jobs.c.kind, jobs.c.domain)
    if uid is not None:
        rows = session.execute(
            sa.select(*columns).where(jobs.c.uid == uid, jobs.c.state == JobState.QUEUED)
        ).all()
        return [row._asdict() for row in rows]
    queues = session.execute(
        sa.select(jobs.c.kind, jobs.c.domain)
        .where(jobs.c.state == JobState.QUEUED, jobs.c.kind.in_(kinds))
        .distinct()
    ).all()
    ranked = []
    for kind, domain in queues:
        same = sa.and_(
            jobs.c.kind == kind,
            jobs.c.domain == domain if domain is not None else jobs.c.domain.is_(None),
        )
        served = session.execute(sa.select(sa.func.max(jobs.c.heartbeat_at)).where(same)).scalar()
        head = session.execute(
            sa.select(*columns)
            .where(same, jobs.c.state == JobState.QUEUED)
            .order_by(jobs.c.id)
            .limit(HEADS)
        ).all()
        for position, row in enumerate(head):
            never = served is None
            ranked.append(((position, 0 if never else 1, served or dt.datetime.min.replace(
                tzinfo=dt.UTC), row.id), row._asdict()))  # fmt: skip
    ranked.sort(key=lambda pair: pair[0])
    return [row for _key, row in ranked[:HEADS]]


def take_queued(
    session: Session, job_id: int, worker: str, lease_seconds: int, **values: Any
) -> bool:
    """The claim itself: a conditional update of a queued row, so of two workers exactly one
    changes it. Starts the next attempt under a fresh lease."""
    now = utcnow()
    return bool(
        session.execute(
            sa.update(Job)
            .where(col(Job.id) == job_id, col(Job.state) == JobState.QUEUED)
            .values(
                state=JobState.RUNNING,
                attempt=Job.attempt + 1,
                worker=worker,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                **values,
            )
        ).rowcount
    )


def renew(
    session: Session,
    job: Job,
    progress: dict[str, Any] | None = None,
    lease_seconds: int = LEASE_SECONDS,
) -> bool:
    """Extend this attempt's lease (and record progress); False if the job moved on. The
    caller commits."""
    now = utcnow()
    values: dict[str, Any] = {
        "heartbeat_at": now,
        "lease_expires_at": now + dt.timedelta(seconds=lease_seconds),
    }
    if progress is not None:
        values["progress"] = {k: progress[k] for k in list(progress)[:20]}
    changed = session.execute(this_attempt(job).values(**values)).rowcount
    return bool(changed)


def finish(
    session: Session,
    job: Job,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    progress: dict[str, Any] | None = None,
) -> bool:
    """Record this attempt's outcome (and its last progress); False if the job had already
    moved on (its lease lapsed and another attempt took it). The caller commits."""
    values: dict[str, Any] = {"progress": progress} if progress else {}
    if result is not None:
        values["result"] = result
    changed = session.execute(
        this_attempt(job).values(
            state=JobState.FAILED if error else JobState.SUCCEEDED,
            error=error[:1000] if error else None,
            finished_at=utcnow(),
            lease_expires_at=None,
            token_hash=None,
            **values,
        )
    ).rowcount
    return bool(changed)


def job_read(job: Job) -> dict[str, Any]:
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
    jobs = session.exec(select(Job).where(Job.subject == subject)).all()
    for job in jobs:
        job.result = {"erased": f"{subject} was deleted; what this job derived from it is gone"}
        session.add(job)
    return len(jobs)
