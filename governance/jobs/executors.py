"""Where the service's own jobs run: `runner` (a `govern jobs run` process polls the queue;
`govern serve` starts one) or `celery` (a message per job to Celery workers that hold the
database and the keys, see governance/jobs/celery_app.py). Either way the job is in the
database first, so an executor only says "there is work"."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

TASK_NAME = "governance.run_job"
QUEUE = "governance-jobs"


class Executor(Protocol):
    name: str

    def submit(self, job_uid: str) -> None: ...


class RunnerExecutor:
    """Jobs wait in the database until a job runner claims them."""

    name = "runner"

    def submit(self, job_uid: str) -> None:
        log.info("job %s queued for the job runners", job_uid)


class CeleryExecutor:
    name = "celery"

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.app = Celery("governance-control-plane-jobs", broker=broker_url)
        self.app.conf.task_ignore_result = True

    def submit(self, job_uid: str) -> None:
        try:
            self.app.send_task(TASK_NAME, args=[job_uid], queue=QUEUE)
        except Exception:  # The job stays queued; a job runner can still take it.
            log.exception("could not send job %s to the Celery broker", job_uid)


def executor_from_config(config: Mapping[str, Any]) -> Executor:
    kind = config.get("JOBS_EXECUTOR") or "runner"
    if kind == "celery":
        return CeleryExecutor(config["CELERY_BROKER_URL"])
    if kind == "runner":
        return RunnerExecutor()
    raise ValueError(f"JOBS_EXECUTOR must be runner or celery, not {kind!r}")
