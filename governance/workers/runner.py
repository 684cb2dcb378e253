"""The job runner: claims the service's own jobs and runs them, one at a time per runner.

`govern jobs run` runs one (and `govern serve` starts one beside the web workers); production
runs several, on any host that reaches the database and the blob store. Tests drain the queue
in their own process with `run_pending`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from governance.jobs import service
from governance.jobs.models import Job
from governance.workers import execution
from governance.workers.execution import worker_name
from governance.workers.handlers import HANDLERS

if TYPE_CHECKING:
    from governance.runtime import Runtime

log = logging.getLogger(__name__)


def run_job(rt: Runtime, job: Job, lease_seconds: int = service.LEASE_SECONDS) -> str:
    """Run one claimed job to its end; return its final state."""
    return execution.run_job(rt, job, HANDLERS, lease_seconds)


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


def warm_wanted(settings: Mapping[str, Any]) -> bool:
    """Whether this worker is told to load the scanner when it starts (SCAN_WORKER_WARM)."""
    return str(settings.get("SCAN_WORKER_WARM", "")).lower() in ("1", "true", "yes")


def warm(rt: Runtime) -> None:
    """Load the PII scanner now if this worker is told to (SCAN_WORKER_WARM), so its first
    shard does not wait for the model."""
    if warm_wanted(rt.settings):
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
