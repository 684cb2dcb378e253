"""The job runner: claims the service's own jobs and runs them, one at a time per runner.

`govern jobs run` runs one (and `govern serve` starts one beside the web workers); production
runs several, on any host that reaches the database and the blob store. Tests drain the queue
in their own process with `run_pending`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

from governance.db import has_written
from governance.errors import GovernanceError
from governance.jobs import service
from governance.jobs.models import Job, JobKind
from governance.workers.handlers import FAILED, HANDLERS, job_actor

if TYPE_CHECKING:
    from governance.runtime import Runtime

log = logging.getLogger(__name__)

# Progress is written at most this often (seconds); the lease is renewed with it.
PROGRESS_SECONDS = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def run_job(rt: Runtime, job: Job, lease_seconds: int = service.LEASE_SECONDS) -> str:
    """Run one claimed job to its end; return its final state."""
    handler = HANDLERS[job.kind]
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


def run_once(rt: Runtime, worker: str | None = None, kinds=None) -> Job | None:
    """Claim and run one queued job, if there is one; return it."""
    lease = int(rt.settings["JOB_LEASE_SECONDS"])
    with rt.database.session_scope() as session:
        job = service.claim(session, worker or worker_name(), kinds or tuple(HANDLERS), lease)
    if job is None:
        return None
    log.info("running job %s (%s, %s)", job.uid, job.kind, job.subject)
    run_job(rt, job, lease)
    return job


def run_pending(rt: Runtime) -> int:
    """Run queued jobs until none is left (tests, scripts); return how many ran."""
    count = 0
    while run_once(rt) is not None:
        count += 1
    return count


def warm(rt: Runtime) -> None:
    """Load the PII scanner now if this worker is told to (SCAN_WORKER_WARM), so its first
    shard does not wait for the model."""
    if str(rt.settings.get("SCAN_WORKER_WARM", "")).lower() in ("1", "true", "yes"):
        started = time.monotonic()
        list(rt.scanner.scan_texts(["warming up"], rt.rules("")))
        log.info("scanner loaded in %.1f s; ready", time.monotonic() - started)


def run_forever(
    rt: Runtime, poll_seconds: float = 0.5, stop: Callable[[], bool] = lambda: False
) -> None:
    """Poll for jobs until told to stop; a database outage is waited out, not fatal."""
    worker = worker_name()
    delay = poll_seconds
    warm(rt)
    while not stop():
        try:
            job = run_once(rt, worker)
            delay = poll_seconds
        except Exception:  # The database went away: back off and try again.
            log.exception("the job runner could not reach the database")
            job, delay = None, min(30.0, delay * 2)
        if job is None:
            time.sleep(delay)
