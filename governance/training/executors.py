"""Where training jobs run: `local` (a `govern worker` on some host polls the queue) or
`celery` (a message per job to Celery workers on GPU hosts; broker Redis or RabbitMQ).

Either way the job itself lives in the database and is claimed over the API under a lease,
so an executor only says "there is work"; a lost message leaves a queued job that any worker
can still claim, never an orphan. Messages carry the job id alone: no data, no secrets.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)

TASK_NAME = "governance.train_job"
QUEUE = "governance-training"


class Executor(Protocol):
    name: str

    def submit(self, job_uid: str) -> None: ...


class LocalExecutor:
    """Jobs wait in the database until a `govern worker` claims them."""

    name = "local"

    def submit(self, job_uid: str) -> None:
        log.info("job %s queued for local workers", job_uid)


class CeleryExecutor:
    """Send each job to Celery workers (see governance/training/celery_app.py)."""

    name = "celery"

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.app = Celery("governance-control-plane", broker=broker_url)
        self.app.conf.task_ignore_result = True

    def submit(self, job_uid: str) -> None:
        try:
            self.app.send_task(TASK_NAME, args=[job_uid], queue=QUEUE)
        except Exception:  # The job stays queued; a local worker can still take it.
            log.exception("could not send job %s to the Celery broker", job_uid)


def executor_from_config(config) -> Executor:
    kind = config.get("TRAINING_EXECUTOR", "local")
    if kind == "celery":
        return CeleryExecutor(config["CELERY_BROKER_URL"])
    if kind == "local":
        return LocalExecutor()
    raise ValueError(f"TRAINING_EXECUTOR must be local or celery, not {kind!r}")
