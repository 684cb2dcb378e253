"""The refresh pipeline: resumable steps whose state lives in the database.

    find-data -> approve-data -> train -> evaluate -> approve-promotion -> promote -> done

Each step either moves the run on or leaves it waiting with a reason (no scanned data for
the year yet, approvals pending, training running). `advance` can be called any number of
times, from any process, after any crash: every step first looks at what already exists
(the approval requests, the version this run started, its status) before creating anything,
so finished work is never repeated. Training always starts from the base model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from governance.approvals import service as approvals
from governance.approvals.models import RequestState
from governance.approvals.rules import load_approval_rules
from governance.audit.service import Actor, record
from governance.datasets.models import Dataset, DatasetVersion, VersionStatus
from governance.db import utcnow
from governance.domains.models import Domain
from governance.errors import GovernanceError
from governance.families import privacy
from governance.families import service as family_service
from governance.families.models import (
    DatasetRef,
    ModelFamily,
    ModelVersion,
    VersionCreate,
    VersionState,
)
from governance.flows import dataset_use
from governance.jobs.executors import Executor, LocalExecutor
from governance.scheduler.models import RefreshRun, Step

REFRESH_PRINCIPAL = "system:refresh"


def _latest_run(session: Session, family: ModelFamily, tax_year: int) -> RefreshRun | None:
    return session.exec(
        select(RefreshRun)
        .where(RefreshRun.family_id == family.id, RefreshRun.tax_year == tax_year)
        .order_by(RefreshRun.attempt.desc())
    ).first()


def start_run(
    session: Session, family: ModelFamily, tax_year: int, trigger: str, actor: Actor
) -> tuple[RefreshRun, bool]:
    """Create the run for (family, tax year), or return the one that exists.

    A scheduled fire always asks for attempt 1, so a duplicate fire finds it and does
    nothing. On demand, a failed run is followed by a new attempt; a retrain (the year's
    model was tainted) always is, unless one is already under way.
    """
    latest = _latest_run(session, family, tax_year)
    finished = latest is not None and latest.step in Step.FINAL
    wants_new = trigger == "retrain" and finished
    if (
        latest is not None
        and not wants_new
        and (latest.step != Step.FAILED or trigger == "schedule")
    ):
        return latest, False
    run = RefreshRun(
        family_id=family.id,
        tax_year=tax_year,
        attempt=latest.attempt + 1 if latest else 1,
        trigger=trigger,
        step=Step.FIND_DATA,
    )
    session.add(run)
    try:
        session.flush()
    except sa.exc.IntegrityError:
        # Another process (a duplicate scheduler, a racing fire) created it first.
        session.rollback()
        return _latest_run(session, family, tax_year), False
    domain = session.get(Domain, family.domain_id)
    record(
        session,
        actor,
        "refresh.start",
        f"model/{family.name}",
        domain.name,
        details={"tax_year": tax_year, "attempt": run.attempt, "trigger": trigger},
    )
    session.commit()
    return run, True


def _wait(run: RefreshRun, why: str) -> None:
    run.waiting_for = why


def _find_data(session: Session, run: RefreshRun, family, domain, policy_dir, actor):
    from governance.pii.rules import load_rules
    from governance.pii.service import latest_receipt

    if run.trigger == "retrain":
        newer = session.exec(
            select(ModelVersion).where(
                ModelVersion.family_id == family.id,
                ModelVersion.status == VersionState.PRODUCTION,
                ModelVersion.tax_year > run.tax_year,
            )
        ).first()
        if newer is not None:
            run.detail = {**run.detail, "failure": f"moot: v{newer.number} serves a later year"}
            return Step.FAILED
    rules = load_rules(policy_dir, domain.name)
    versions = session.exec(
        select(DatasetVersion)
        .where(
            DatasetVersion.domain_id == domain.id,
            DatasetVersion.tax_year == run.tax_year,
            DatasetVersion.status == VersionStatus.READY,
        )
        .order_by(DatasetVersion.id)
    ).all()
    if not versions:
        return _wait(run, f"no dataset version of tax year {run.tax_year} in {domain.name}")
    # The newest version of each dataset for the year is the year's data.
    newest: dict[int, DatasetVersion] = {}
    for version in versions:
        newest[version.dataset_id] = version
    unscanned = [
        v.uid
        for v in newest.values()
        if (r := latest_receipt(session, v, rules.hash)) is None
        or r.content_hash != v.content_hash
        or r.verdict not in ("pass", "redacted")
    ]
    if unscanned:
        return _wait(run, f"a passing scan of {', '.join(unscanned)}")
    run.detail = {
        **run.detail,
        "datasets": [
            {"dataset_id": v.dataset_id, "version": v.number, "uid": v.uid} for v in newest.values()
        ],
    }
    return Step.APPROVE_DATA


def _approve_data(session: Session, run: RefreshRun, family, domain, policy_dir, actor):
    waiting = []
    for used in run.detail["datasets"]:
        subject = f"dataset-version/{used['uid']}"
        if approvals.approved_request(
            session, approvals.DATASET_USE, subject, family.name, policy_dir, actor
        ):
            continue
        pending = approvals.request_in_state(
            session, approvals.DATASET_USE, subject, family.name, RequestState.PENDING
        )
        if pending is None:
            version = session.exec(
                select(DatasetVersion).where(DatasetVersion.uid == used["uid"])
            ).one()
            try:
                pending = dataset_use.request_dataset_use(
                    session,
                    domain,
                    session.get(Dataset, version.dataset_id),
                    version,
                    family.name,
                    policy_dir,
                    load_approval_rules(policy_dir),
                    actor=actor,
                )
            except GovernanceError as exc:
                # The version changed under us (deleted, rescanned): look for data again.
                run.detail = {**run.detail, "last_error": exc.message}
                return Step.FIND_DATA
            if pending.state == RequestState.APPROVED:
                continue
            plan = pending.summary.get("privacy_plan")
            if plan is not None:
                # The request says what the version will spend of the domain's budget.
                run.detail = {**run.detail, "privacy_plan": plan}
        waiting.append(pending.uid)
    if waiting:
        return _wait(run, f"approval of {', '.join(waiting)}")
    return Step.TRAIN


def _version_of(session: Session, run: RefreshRun) -> ModelVersion | None:
    if run.version_id is not None:
        return session.get(ModelVersion, run.version_id)
    # Resuming after a crash between starting the version and saving it on the run.
    for version in session.exec(
        select(ModelVersion).where(ModelVersion.family_id == run.family_id)
    ).all():
        if version.training_config.get("refresh_run") == run.id:
            return version
    return None


def _train(session: Session, run: RefreshRun, family, domain, policy_dir, actor, executor):
    version = _version_of(session, run)
    if version is None:
        plan = privacy.plan(session, family, domain, policy_dir)
        if plan is not None and not plan["fits"]:
            return _wait(
                run,
                f"privacy budget of {domain.name}: epsilon {plan['remaining']['epsilon']} left, "
                f"less than {privacy.MIN_PLANNED_EPSILON} (older versions must leave the period)",
            )
        data = VersionCreate(
            tax_year=run.tax_year,
            datasets=[
                DatasetRef(dataset_id=d["dataset_id"], version=d["version"])
                for d in run.detail["datasets"]
            ],
        )
        try:
            version = family_service.start_version(
                session,
                family,
                domain,
                data,
                policy_dir,
                actor=actor,
                executor=executor,
                refresh_run=run.id,
                privacy_epsilon=plan["epsilon"] if plan is not None else None,
            )
        except GovernanceError as exc:
            run.detail = {**run.detail, "last_error": exc.message}
            return Step.FIND_DATA
    run.version_id = version.id
    if version.status in (VersionState.TRAINING, VersionState.TRAINED):
        return _wait(run, f"training of {family.name} v{version.number}")
    return Step.EVALUATE


def _evaluate(session: Session, run: RefreshRun, family, domain, policy_dir, actor):
    version = session.get(ModelVersion, run.version_id)
    if version.status in (VersionState.FAILED, VersionState.TAINTED):
        run.detail = {**run.detail, "failure": version.status_reason}
        return Step.FAILED
    if version.status == VersionState.TRAINED:
        return _wait(run, f"evaluation of v{version.number}")
    return Step.APPROVE_PROMOTION


def _approve_promotion(session: Session, run: RefreshRun, family, domain, policy_dir, actor):
    version = session.get(ModelVersion, run.version_id)
    if version.status == VersionState.PRODUCTION:
        return Step.PROMOTE
    if version.status in (VersionState.FAILED, VersionState.TAINTED):
        return Step.FAILED
    subject = f"model-version/{family.name}/{version.number}"
    if approvals.approved_request(
        session, approvals.MODEL_PROMOTION, subject, family.name, policy_dir, actor
    ):
        return Step.PROMOTE
    pending = approvals.request_in_state(
        session, approvals.MODEL_PROMOTION, subject, family.name, RequestState.PENDING
    )
    if pending is None:
        request = family_service.request_promotion(
            session, family, version, load_approval_rules(policy_dir), actor=actor
        )
        if request.state == RequestState.APPROVED:
            return Step.PROMOTE
        pending = request
    return _wait(run, f"approval of promotion {pending.uid}")


def _promote(session: Session, run: RefreshRun, family, domain, policy_dir, actor, sign):
    version = session.get(ModelVersion, run.version_id)
    if version.status != VersionState.PRODUCTION:
        family_service.promote(session, family, version, policy_dir, actor=actor, sign=sign)
    return Step.DONE


# Every step but TRAIN and PROMOTE, which `advance` binds to its executor and its signer.
HANDLERS = {
    Step.FIND_DATA: _find_data,
    Step.APPROVE_DATA: _approve_data,
    Step.EVALUATE: _evaluate,
    Step.APPROVE_PROMOTION: _approve_promotion,
}


def advance(
    session: Session,
    run: RefreshRun,
    policy_dir: Path,
    actor: Actor,
    sign: Callable[[ModelVersion, Any], str],
    executor: Executor | None = None,
) -> RefreshRun:
    """Move the run on as far as it can go now; return it (resting, done or failed).
    `sign` signs a version's adapter when it is promoted (the runtime's sign_version);
    `executor` is told of a training job once the step that queued it has committed (the
    deployment's JOBS_EXECUTOR: Celery workers hear of it only from the broker)."""
    family = session.get(ModelFamily, run.family_id)
    domain = session.get(Domain, family.domain_id)
    executor = executor or LocalExecutor()
    # Training goes to this process's executor; promotion signs with its signer.
    handlers = {
        **HANDLERS,
        Step.TRAIN: partial(_train, executor=executor),
        Step.PROMOTE: partial(_promote, sign=sign),
    }

    for _ in range(len(Step.ORDER) + 2):
        if run.step in Step.FINAL:
            break
        run.waiting_for = None
        before = run.step
        after = handlers[before](session, run, family, domain, Path(policy_dir), actor)
        run.updated_at = utcnow()
        if after is None:  # Waiting: keep the step, keep the reason.
            session.add(run)
            session.commit()
            break
        run.step = after
        if after in Step.FINAL:
            run.finished_at = utcnow()
        session.add(run)
        record(
            session,
            actor,
            "refresh.step",
            f"model/{family.name}",
            domain.name,
            details={"tax_year": run.tax_year, "attempt": run.attempt, "from": before, "to": after},
        )
        session.commit()
    return run


def open_runs(session: Session) -> list[RefreshRun]:
    return list(
        session.exec(
            select(RefreshRun).where(RefreshRun.step.not_in(Step.FINAL)).order_by(RefreshRun.id)
        )
    )


def refresh_actor(policy_hash: str) -> Actor:
    return Actor(REFRESH_PRINCIPAL, None, policy_hash)


def tax_year_for(moment: dt.datetime) -> int:
    """A refresh in early year Y trains on tax year Y-1 (the year whose law just settled)."""
    return moment.year - 1


def take_up_retrains(session: Session, actor: Actor) -> int:
    """Start a retrain run for each queued retrain request (a tainted production version)."""
    from governance.families.models import RetrainRequest

    count = 0
    for request in session.exec(
        select(RetrainRequest).where(RetrainRequest.state == "queued").order_by(RetrainRequest.id)
    ).all():
        family = session.get(ModelFamily, request.family_id)
        start_run(session, family, request.tax_year, "retrain", actor)
        request.state, request.done_at = "started", utcnow()
        session.add(request)
        session.commit()
        count += 1
    return count
