"""The Celery side of the `celery` executor, run on GPU hosts:

    GOVERNANCE_URL=https://governance.internal GOVERNANCE_TOKEN=<a worker's token> \\
    GOVERNANCE_CELERY_BROKER=redis://broker:6379/0 \\
    celery -A governance.training.celery_app worker -Q governance-training --pool solo

A task carries only a job id. The worker claims that job over the API with its own token,
exactly as `govern worker` does, and trains it in a subprocess; it never holds database
credentials or keys. A job another worker already took is skipped.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import Celery

from governance.training.executors import QUEUE, TASK_NAME

log = logging.getLogger(__name__)

app = Celery(
    "governance-training",
    broker=os.environ.get("GOVERNANCE_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
)
app.conf.task_ignore_result = True
app.conf.task_default_queue = QUEUE
# A job is acknowledged only when done, and one at a time: a worker killed mid-job leaves
# the message for another worker (and the lease in the database decides who may finish).
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 1


@app.task(name=TASK_NAME)
def train_job(job_uid: str) -> bool:
    """Claim this job over the API and train it; False when it was no longer queued."""
    from governance.client import api_call
    from governance.training.worker import run_job

    name = f"celery@{socket.gethostname()}:{os.getpid()}"
    claim = api_call("POST", "/api/v1/jobs/claim", {"worker": name, "job": job_uid})
    if claim is None:
        log.info("job %s is no longer queued; skipped", job_uid)
        return False
    return run_job(claim, None, log.info)
