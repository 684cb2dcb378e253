"""How a deployment hears of queued jobs: one executor per deployment, for every kind.

- `local` (the default): jobs wait in the database; the service's job runners (`govern jobs
  run`, which `govern serve` starts) and the training workers (`govern worker`) poll for them.
- `celery`: one message per job, routed by kind to a queue: training to `governance-training`
  (Celery workers on GPU hosts that claim over the API with a token, and hold no database
  credentials or keys), everything else to `governance-jobs` (Celery workers that are job
  runners: the database and the keys). See governance/jobs/celery_app.py.

Either way the job is in the database first and is claimed under a lease, so an executor only
says "there is work": a lost message leaves a queued job that any poller still takes, never an
orphan. Messages carry the job id alone: no data, no secrets.

Settings: `JOBS_EXECUTOR` (local or celery) and `CELERY_BROKER_URL` (Redis or RabbitMQ).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Kind -> (Celery task, queue).
TRAIN_ROUTE = ("governance.train_job", "governance-training")
SERVICE_ROUTE = ("governance.run_job", "governance-jobs")


def route(kind: str) -> tuple[str, str]:
    """The Celery task and queue that run jobs of this kind."""
    return TRAIN_ROUTE if kind == "train" else SERVICE_ROUTE


class Executor(Protocol):
    name: str

    def submit(self, job_uid: str, kind: str) -> None: ...


class LocalExecutor:
    """Jobs wait in the database until a runner or a worker claims them."""

    name = "local"

    def submit(self, job_uid: str, kind: str) -> None:
        log.info("%s job %s queued", kind, job_uid)


class CeleryExecutor:
    name = "celery"

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.app = Celery("governance-control-plane", broker=broker_url)
        self.app.conf.task_ignore_result = True

    def submit(self, job_uid: str, kind: str) -> None:
        task, queue = route(kind)
        try:
            self.app.send_task(task, args=[job_uid], queue=queue)
        except Exception:  # The job stays queued; a poller can still take it.
            log.exception("could not send job %s to the Celery broker", job_uid)


def executor_from_config(config: Mapping[str, Any]) -> Executor:
    kind = config.get("JOBS_EXECUTOR") or "local"
    if kind == "celery":
        return CeleryExecutor(config["CELERY_BROKER_URL"])
    if kind == "local":
        return LocalExecutor()
    raise ValueError(f"JOBS_EXECUTOR must be local or celery, not {kind!r}")
