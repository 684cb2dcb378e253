"""Running one claimed job: its handler in a unit of work, progress as checkpoints, the lease
kept alive, and its outcome recorded. The runner and a scan that scans its own shards both
run jobs through here, each with the handlers it is given."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from typing import TYPE_CHECKING, Any

from governance.audit.service import Actor
from governance.db import has_written
from governance.errors import GovernanceError
from governance.jobs import service
from governance.jobs.models import Job, JobKind

if TYPE_CHECKING:
    from sqlmodel import Session

    from governance.runtime import Runtime

log = logging.getLogger(__name__)

# The key of a handler's result that names a failure it recorded itself (the runner takes it
# out and ends the job failed, keeping what the handler wrote).
FAILED = "job_failed"

Progress = Callable[[dict[str, Any]], None]
Handler = Callable[["Runtime", "Session", Job, Actor, Progress], dict[str, Any]]


def job_actor(rt: Runtime, job: Job) -> Actor:
    """A job acts for whoever asked for it, under the policy in force when it runs."""
    return Actor(job.requested_by or "system", None, rt.authorizer.policy.hash)


# Progress is written at most this often (seconds); the lease is renewed with it.
PROGRESS_SECONDS = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def run_job(
    rt: Runtime,
    job: Job,
    handlers: Mapping[str, Handler],
    lease_seconds: int = service.LEASE_SECONDS,
) -> str:
    """Run one claimed job to its end with its kind's handler; return its final state."""
    handler = handlers[job.kind]
    retry = False
    last = [0.0]
    latest: dict[str, Any] = {}
    lock = threading.Lock()
    stop = threading.Event()

    # The handler's session is opened first, so that `progress` can commit it.
    session = rt.database.session()
    with rt.database.session_scope() as progress_session:

        def progress(update: dict[str, Any]) -> None:
            latest.clear()
            latest.update(update)
            now = time.monotonic()
            if now - last[0] < PROGRESS_SECONDS and "stage" not in update:
                return
            last[0] = now
            # A report of progress is the job's checkpoint: what the handler wrote so far is
            # committed with it, so no lock is held for the whole job (SQLite has one writer)
            # and a step that calls out (the judge may be this service's own gateway) holds
            # none while it waits.
            if has_written(session):
                session.commit()
            with lock:
                service.renew(progress_session, job, update, lease_seconds)
                progress_session.commit()

        def keep_alive() -> None:
            # Long steps without progress (loading a model) must not let the lease lapse.
            while not stop.wait(lease_seconds / 3):
                with lock:
                    renewed = service.renew(progress_session, job, None, lease_seconds)
                    progress_session.commit()
                    if not renewed:
                        return

        beat = threading.Thread(target=keep_alive, name=f"job-{job.uid[:8]}", daemon=True)
        beat.start()
        try:
            with closing(session):
                try:
                    result = handler(rt, session, job, job_actor(rt, job), progress)
                    # A handler that recorded a failure of its own (a scan's error receipt)
                    # keeps what it wrote, and the job still ends failed.
                    error = result.pop(FAILED, None)
                    session.commit()
                except GovernanceError as exc:
                    session.rollback()
                    log.warning("job %s (%s) failed: %s", job.uid, job.kind, exc.message)
                    result, error = {"code": exc.code, "details": exc.details or {}}, exc.message
                except Exception as exc:  # A failed job is recorded, never left running.
                    session.rollback()
                    log.exception("job %s (%s) failed", job.uid, job.kind)
                    result, error = {"code": "internal_error"}, f"{type(exc).__name__}: {exc}"
                    retry = job.kind in JobKind.RETRIED
        finally:
            stop.set()
            beat.join()
        with lock:
            if error and retry:
                # An unexpected failure of a kind that is retried: back to the queue while
                # attempts remain (as a lapsed lease would be), else failed for good.
                service.release(progress_session, job, error)
            else:
                service.finish(progress_session, job, result, error, latest)
            progress_session.commit()
    return "failed" if error else "succeeded"
