"""What each kind of job does, with the runtime's parts: one function per kind.

A handler gets the runtime, a session, the job and a `progress(dict)` callback (which also
renews the lease), and returns the job's result: a small JSON document that names what was
made (a receipt, an evaluation, an export file), never raw data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from governance.audit.service import Actor
from governance.datasets.models import DatasetVersion
from governance.errors import NotFound
from governance.models.evaluation import run_gate
from governance.models.models import ModelVersion
from governance.pii import service as pii
from governance.training.models import JobKind, TrainingJob

if TYPE_CHECKING:
    from governance.runtime import Runtime

Progress = Callable[[dict[str, Any]], None]
Handler = Callable[["Runtime", Session, TrainingJob, Actor, Progress], dict[str, Any]]


def job_actor(rt: Runtime, job: TrainingJob) -> Actor:
    """A job acts for whoever asked for it, under the policy in force when it runs."""
    return Actor(job.requested_by or "system", None, rt.authorizer.policy.hash)


def scan(
    rt: Runtime, session: Session, job: TrainingJob, actor: Actor, progress: Progress
) -> dict[str, Any]:
    """Scan a dataset version for PII under its domain's rules; the result is the receipt."""
    uid = (job.subject or "").removeprefix("dataset-version/")
    version = session.exec(select(DatasetVersion).where(DatasetVersion.uid == uid)).first()
    if version is None:
        raise NotFound(f"no dataset version {uid}")
    rules = rt.rules(job.domain or "")
    total = version.record_count or 0
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress({"records": done, "total": total})

    progress({"records": 0, "total": total, "stage": "loading the scanner"})
    scanner = rt.scanner
    receipt = pii.scan_version(
        session,
        rt.keyring,
        rt.store,
        scanner,
        version,
        rules,
        actor=actor,
        progress=advance,
    )
    return {"receipt": pii.receipt_read(receipt, version, rules.hash)}


def evaluate(
    rt: Runtime, session: Session, job: TrainingJob, actor: Actor, progress: Progress
) -> dict[str, Any]:
    """Run the evaluation gate on a model version: held-out metrics, the PII probe."""
    uid = (job.subject or "").removeprefix("model-version/")
    version = session.exec(select(ModelVersion).where(ModelVersion.uid == uid)).first()
    if version is None:
        raise NotFound(f"no model version {uid}")
    progress({"stage": "evaluating"})
    version = run_gate(rt, session, version, actor)
    return {
        "version": version.number,
        "status": version.status,
        "gate": (version.evaluation or {}).get("gate"),
    }


HANDLERS: dict[str, Handler] = {JobKind.SCAN: scan, JobKind.EVALUATE: evaluate}
