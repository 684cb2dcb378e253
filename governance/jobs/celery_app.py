"""The service's own jobs (scans, evaluation gates, exports) as Celery tasks, for production:

    GOVERNANCE_HOME=... GOVERNANCE_DATABASE_URL=postgresql://... \\
    JOBS_EXECUTOR=celery CELERY_BROKER_URL=redis://broker:6379/0 \\
    celery -A governance.jobs.celery_app worker -Q governance-jobs --pool solo

With JOBS_EXECUTOR=celery the API sends one message per job (its id only) when it queues
it. A Celery worker here is a job runner: it has the database and the keys, like `govern
jobs run`, claims exactly that job under the same lease and runs it. The job lives in the
database either way, so a lost message leaves a queued job that any `govern jobs run` still
takes, never an orphan; a job another runner already took is skipped.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import Celery

from governance import runtime
from governance.config import load_config
from governance.jobs import runner, service
from governance.jobs.executors import QUEUE, TASK_NAME

log = logging.getLogger(__name__)

app = Celery(
    "governance-jobs",
    broker=load_config().get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0",
)
app.conf.task_ignore_result = True
app.conf.task_default_queue = QUEUE
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 1

_RUNTIME: runtime.Runtime | None = None


def worker_runtime() -> runtime.Runtime:
    """One runtime per worker process (the scanner loads once, on the first scan)."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = runtime.build()
    return _RUNTIME


@app.task(name=TASK_NAME)
def run_job(job_uid: str) -> bool:
    """Claim this job and run it; False when it was no longer queued."""
    rt = worker_runtime()
    name = f"celery@{socket.gethostname()}:{os.getpid()}"
    with rt.database.session_scope() as session:
        job = service.claim(session, name, uid=job_uid)
    if job is None:
        log.info("job %s is no longer queued; skipped", job_uid)
        return False
    runner.run_job(rt, job)
    return True
