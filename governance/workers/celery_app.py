"""The Celery workers of the `celery` executor: one app, one task per route.

The service's own jobs (scans, gates, exports, policy reviews), on hosts that hold the
database and the keys, like `govern jobs run`:

    GOVERNANCE_HOME=... GOVERNANCE_DATABASE_URL=postgresql://... \\
    CELERY_BROKER_URL=redis://broker:6379/0 \\
    celery -A governance.workers.celery_app worker -Q governance-jobs --pool solo

Training, on GPU hosts that hold only a worker's token (never database credentials or keys):

    GOVERNANCE_URL=https://governance.internal GOVERNANCE_TOKEN=<a worker's token> \\
    CELERY_BROKER_URL=redis://broker:6379/0 \\
    celery -A governance.workers.celery_app worker -Q governance-training --pool solo

A message carries a job id only. The worker claims exactly that job under the same lease as
every other claimer (a training worker over the API, with its token), so a job another worker
already took is skipped, and a lost message leaves a queued job that a poller still takes.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from celery import Celery, signals

from governance.config import DEFAULTS
from governance.jobs.executors import SERVICE_ROUTE, TRAIN_ROUTE

if TYPE_CHECKING:
    from governance.runtime import Runtime

log = logging.getLogger(__name__)

app = Celery(
    "governance-jobs",
    broker=os.environ.get("CELERY_BROKER_URL") or DEFAULTS["CELERY_BROKER_URL"],
)
app.conf.task_ignore_result = True
app.conf.task_default_queue = SERVICE_ROUTE[1]
# A job is acknowledged only when done, and one at a time: a worker killed mid-job leaves the
# message for another worker (and the lease in the database decides who may finish).
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 1

_RUNTIME: Runtime | None = None


def worker_name() -> str:
    return f"celery@{socket.gethostname()}:{os.getpid()}"


def worker_runtime() -> Runtime:
    """One runtime per worker process (the scanner loads once, on the first scan)."""
    global _RUNTIME
    if _RUNTIME is None:
        from governance import runtime

        _RUNTIME = runtime.build()
    return _RUNTIME


@signals.worker_ready.connect
def warm_worker(**_kwargs) -> None:
    """A service-jobs worker told to (SCAN_WORKER_WARM) loads the scanner before work comes."""
    from governance.config import load_config
    from governance.workers import runner

    # Read from the configuration first: a worker not told to builds no runtime at start.
    if runner.warm_wanted(load_config()):
        runner.warm(worker_runtime())


@app.task(name=SERVICE_ROUTE[0])
def run_service_job(job_uid: str) -> bool:
    """Claim this job of the service's own and run it; False when it was no longer queued."""
    from governance.jobs import service
    from governance.workers import runner

    rt = worker_runtime()
    lease = int(rt.settings["JOB_LEASE_SECONDS"])
    with rt.database.session_scope() as session:
        job = service.claim(session, worker_name(), lease_seconds=lease, uid=job_uid)
    if job is None:
        log.info("job %s is no longer queued; skipped", job_uid)
        return False
    runner.run_job(rt, job, lease)
    return True


@app.task(name=TRAIN_ROUTE[0])
def train_job(job_uid: str) -> bool:
    """Claim this training job over the API and train it; False when it was no longer
    queued."""
    from governance.client import api_call
    from governance.training.worker import train_claimed

    claim = api_call("POST", "/api/v1/jobs/claim", {"worker": worker_name(), "job": job_uid})
    if claim is None:
        log.info("job %s is no longer queued; skipped", job_uid)
        return False
    return train_claimed(claim, None, log.info)
