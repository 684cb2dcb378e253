"""Base models, families and versions: training starts, lineage, promotion, rollback, taint."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, col, select

from audit.log import canonical, key_id
from governance import __version__
from governance.approvals import service as approvals
from governance.approvals import subjects
from governance.approvals.models import ApprovalRequest
from governance.audit.service import Actor, format_time, record
from governance.datasets import service as datasets
from governance.db import utcnow
from governance.domains.models import Domain
from governance.domains.settings import memorization
from governance.errors import Conflict, InvalidInput, NotFound
from governance.families import canaries, intake
from governance.families.cron import validate_cron
from governance.families.models import (
    MIN_HELD_OUT_RECORDS,
    BaseModelRecord,
    FamilyCreate,
    ModelFamily,
    ModelVersion,
    VersionCreate,
    VersionState,
)
from governance.families.privacy import check_training as check_privacy
from governance.jobs import service as jobs
from governance.jobs.executors import Executor
from governance.jobs.models import Job, JobKind, JobState
from governance.pii.models import ScanReceipt
from governance.pii.rules import load_rules
from governance.pii.service import require_trainable

# --- base models ------------------------------------------------------------------------------


def get_base_model(session: Session, name: str) -> BaseModelRecord:
    base = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
    if base is None:
        raise InvalidInput(f"no base model named {name!r}", details={"field": "base_model"})
    return base


# --- families ---------------------------------------------------------------------------------


def create_family(
    session: Session, domain: Domain, data: FamilyCreate, policy_dir: Path, *, actor: Actor
):
    """Create a model family in a domain."""

    validate_cron(data.refresh_schedule)
    base = get_base_model(session, data.base_model)
    intake.require_base_approved(session, base, domain, policy_dir, actor)
    if session.exec(select(ModelFamily).where(ModelFamily.name == data.name)).first():
        # Family names are global (the gateway addresses a family by name); the answer is the
        # same whichever domain holds the name, so it tells another domain nothing.
        raise Conflict(
            f"the name {data.name!r} is not available for a new model family; choose another",
            details={"field": "name"},
        )
    family = ModelFamily(
        name=data.name,
        domain_id=domain.id,
        base_model_id=base.id,
        lora=data.lora,
        hyperparameters=data.hyperparameters,
        eval_suite=data.eval_suite.model_dump(),
        privacy=data.privacy.model_dump() if data.privacy else None,
        refresh_schedule=data.refresh_schedule,
        seed=data.seed,
        created_by=actor.principal,
    )
    session.add(family)
    session.flush()
    record(
        session,
        actor,
        "model.create",
        f"model/{family.name}",
        domain.name,
        details={"base_model": base.name, "weights_hash": base.weights_hash},
    )
    return family


def find_family(session: Session, name: str) -> tuple[ModelFamily, Domain] | None:
    """The family of that name and its domain (one query)."""
    found = session.exec(
        select(ModelFamily, Domain)
        .join(Domain, Domain.id == ModelFamily.domain_id)
        .where(ModelFamily.name == name)
    ).first()
    return (found[0], found[1]) if found else None


def get_version(session: Session, family: ModelFamily, number: int) -> ModelVersion:
    version = session.exec(
        select(ModelVersion).where(
            ModelVersion.family_id == family.id, ModelVersion.number == number
        )
    ).first()
    if version is None:
        raise NotFound(f"{family.name} has no version {number}", details={"version": number})
    return version


def list_versions(session: Session, family: ModelFamily) -> list[ModelVersion]:
    return list(
        session.exec(
            select(ModelVersion)
            .where(ModelVersion.family_id == family.id)
            .order_by(ModelVersion.number)
        )
    )


def variant_base(family: ModelFamily, base_model_id: int | None) -> int:
    """The base of a variant: a family serves one variant per base model it was trained on,
    and the family's own base is its default variant."""
    return base_model_id if base_model_id is not None else family.base_model_id


def work_in_flight(session: Session, version: ModelVersion) -> Job | None:
    """The job a version waits on: its training while it trains, its evaluation gate once
    trained; None when it waits on nothing."""
    if version.status == VersionState.TRAINING:
        query = select(Job).where(Job.version_id == version.id, Job.kind == JobKind.TRAIN)
    elif version.status == VersionState.TRAINED:
        query = select(Job).where(
            Job.kind == JobKind.EVALUATE, Job.subject == f"model-version/{version.uid}"
        )
    else:
        return None
    return session.exec(query.order_by(col(Job.id).desc()).limit(1)).first()


def production_version(
    session: Session, family: ModelFamily, base_model_id: int | None = None
) -> ModelVersion | None:
    """The version in production for one variant (by default the family's own base)."""
    return session.exec(
        select(ModelVersion).where(
            ModelVersion.family_id == family.id,
            ModelVersion.base_model_id == variant_base(family, base_model_id),
            ModelVersion.status == VersionState.PRODUCTION,
        )
    ).first()


def serving_version(
    session: Session, family: ModelFamily, base_model_id: int | None = None
) -> ModelVersion | None:
    """The version a variant's queries go to: production, else the newest untainted retired
    one."""
    return (
        production_version(session, family, base_model_id)
        or session.exec(
            select(ModelVersion)
            .where(
                ModelVersion.family_id == family.id,
                ModelVersion.base_model_id == variant_base(family, base_model_id),
                ModelVersion.status == VersionState.RETIRED,
            )
            .order_by(ModelVersion.number.desc())
        ).first()
    )


def serving_variants(
    session: Session, family: ModelFamily
) -> list[tuple[BaseModelRecord, ModelVersion]]:
    """Every variant of the family that may serve, as (base model, serving version), the
    family's own base first: per base, its production version, else its newest retired one
    (what `serving_version` picks), read in one query."""
    rows = session.exec(
        select(ModelVersion, BaseModelRecord)
        .join(BaseModelRecord, BaseModelRecord.id == ModelVersion.base_model_id)
        .where(
            ModelVersion.family_id == family.id,
            ModelVersion.status.in_(sorted(VersionState.SERVABLE)),
        )
        .order_by(ModelVersion.number.desc())
    ).all()
    chosen: dict[int, tuple[BaseModelRecord, ModelVersion]] = {}
    for version, base in rows:
        current = chosen.get(base.id)
        if current is None or (
            version.status == VersionState.PRODUCTION
            and current[1].status != VersionState.PRODUCTION
        ):
            chosen[base.id] = (base, version)
    return [chosen[b] for b in sorted(chosen, key=lambda b: (b != family.base_model_id, b))]


# --- training ---------------------------------------------------------------------------------


def start_version(
    session: Session,
    family: ModelFamily,
    domain: Domain,
    data: VersionCreate,
    policy_dir: Path,
    *,
    actor: Actor,
    executor: Executor,
    refresh_run: int | None = None,
    privacy_epsilon: float | None = None,
) -> ModelVersion:
    """Check every dataset version (domain, scan, approval), create the version and its job.
    `privacy_epsilon` (the refresh's plan) lowers a DP family's epsilon for this version."""
    # The PII service loads Presidio (and with it torch); the web process imports it on use.

    rules = load_rules(policy_dir, domain.name)
    used = []
    counts: list[int] = []
    for ref in data.datasets:
        dataset, owner = datasets.get_dataset(session, ref.dataset_id)
        if owner.id != domain.id:
            # Another domain's dataset is answered exactly as a missing one.
            raise NotFound(f"no dataset {ref.dataset_id}", details={"dataset_id": ref.dataset_id})
        version = datasets.get_version(session, dataset, ref.version)
        # Segregation, in the service layer as well as at the API.
        datasets.ensure_same_domain(version, domain)
        if version.tax_year != data.tax_year:
            raise InvalidInput(
                f"dataset {dataset.name} v{version.number} holds tax year {version.tax_year}, "
                f"not {data.tax_year}",
                details={"field": "datasets", "dataset_id": ref.dataset_id},
            )
        receipt = require_trainable(session, version, rules)
        counts.append(receipt.sanitized_records)
        approval = approvals.approved_request(
            session,
            approvals.DATASET_USE,
            f"dataset-version/{version.uid}",
            family.name,
            policy_dir,
            actor,
        )
        if approval is None:
            raise Conflict(
                f"{dataset.name} v{version.number} is not approved to train {family.name}: "
                f"ask for it (govern approvals request-data {dataset.id} {version.number} "
                f"--family {family.name}); its reviewers decide it in `govern approvals inbox`",
                details={"dataset_id": ref.dataset_id, "version": ref.version},
                code="not_approved",
            )
        used.append(
            {
                "uid": version.uid,
                "dataset": dataset.name,
                "dataset_id": dataset.id,
                "version": version.number,
                "tax_year": version.tax_year,
                "content_hash": version.content_hash,
                "receipt": receipt.id,
                "rules_hash": receipt.rules_hash,
                "sanitized_hash": receipt.sanitized_hash,
                "approval": approval.uid,
            }
        )
    check_data_size(sum(counts), family)
    # A version may be trained on another registered base than the family's: a variant of
    # the family (the same data on a base of another size), served and promoted on its own.
    base = (
        get_base_model(session, data.base_model)
        if data.base_model
        else session.get(BaseModelRecord, family.base_model_id)
    )
    # The base must be approved for this domain (and not withdrawn) for every new version.
    base_approval = intake.require_base_approved(session, base, domain, policy_dir, actor)
    parent = production_version(session, family, base.id)
    number = 1 + (
        session.exec(
            select(sa.func.max(ModelVersion.number)).where(ModelVersion.family_id == family.id)
        ).one()
        or 0
    )
    # Differential privacy: required by the domain, and within its budget (refused now, with
    # the numbers, rather than after training).
    private = check_privacy(session, family, domain, policy_dir, privacy_epsilon)
    # The memorization test's canaries: synthetic, drawn now, kept in the job (so every attempt
    # trains on the same bundle); the settings, without the secrets, go into the lineage.
    test = memorization(policy_dir, domain.name)
    plan = canaries.draw(test)
    version = ModelVersion(
        uid=uuid.uuid4().hex,
        family_id=family.id,
        number=number,
        tax_year=data.tax_year,
        status=VersionState.TRAINING,
        parent_id=parent.id if parent else None,
        base_model_id=base.id,
        base_weights_hash=base.weights_hash,
        datasets=used,
        training_config={
            "lora": family.lora,
            "hyperparameters": family.hyperparameters,
            "seed": family.seed,
            "eval_suite": family.eval_suite,
            # Every version trains from the base model, never on top of an earlier adapter.
            "from": "base-model",
            "base_approval": base_approval.uid,
            "memorization": test.model_dump() if plan else None,
            **({"privacy": private} if private is not None else {}),
            **({"refresh_run": refresh_run} if refresh_run is not None else {}),
        },
        code_version=f"governance {__version__}",
        policy_hash=actor.policy_hash or "",
        trained_by=actor.principal,
    )
    session.add(version)
    session.flush()
    jobs.enqueue(
        session,
        Job(
            uid=uuid.uuid4().hex,
            kind=JobKind.TRAIN,
            version_id=version.id,
            state=JobState.QUEUED,
            params={"memorization": plan} if plan else {},
        ),
        executor,
    )
    record(
        session,
        actor,
        "model.train",
        f"model/{family.name}",
        domain.name,
        details={
            "version": number,
            "tax_year": data.tax_year,
            "datasets": [u["uid"] for u in used],
            "base_weights_hash": base.weights_hash,
        },
    )
    return version


def check_data_size(records: int, family: ModelFamily) -> None:
    """Refuse, with the numbers and what to change, a training request whose data cannot give
    the gate its held-out part (the family's share, and at least MIN_HELD_OUT_RECORDS: the
    bundle's split tops it up) while leaving more than half, and at least one batch, to
    train on."""
    suite = family.eval_suite or {}
    fraction = float(suite.get("holdout_fraction", 0.1))
    batch = int((family.hyperparameters or {}).get("batch_size", 8))

    def parts(n: int) -> tuple[int, int]:
        held = max(int(n * fraction), MIN_HELD_OUT_RECORDS)
        return held, n - held

    def enough(n: int) -> bool:
        _held, train = parts(n)
        return train >= batch and train > n / 2

    if enough(records):
        return
    held, train = parts(records)
    least = next(n for n in itertools.count(records + 1) if enough(n))
    raise InvalidInput(
        f"too little data to train and evaluate: {records} record(s); the gate holds out "
        f"{held} ({fraction:.0%}, and at least {MIN_HELD_OUT_RECORDS} to tell a gain from "
        f"noise), which leaves {train} to train on, and training needs at least one batch of "
        f"{batch} and more than half of the data: this family needs at least {least} records. "
        "Upload more records to a dataset version (govern dataset upload), have it scanned "
        "and approved, and ask again; or use a family with a smaller batch_size "
        "(govern family create --batch-size)",
        details=[
            {
                "field": "datasets",
                "records": records,
                "held_out": held,
                "train": train,
                "holdout_fraction": fraction,
                "min_held_out": MIN_HELD_OUT_RECORDS,
                "batch_size": batch,
                "least_records": least,
            }
        ],
        code="too_little_data",
    )


# --- lineage ----------------------------------------------------------------------------------


def lineage(session: Session, version: ModelVersion) -> dict[str, Any]:
    """Everything that says how a version was made (without its signature)."""

    family = session.get(ModelFamily, version.family_id)
    domain = session.get(Domain, family.domain_id)
    base = session.get(BaseModelRecord, version.base_model_id)
    parent = session.get(ModelVersion, version.parent_id) if version.parent_id else None
    entries = []
    for used in version.datasets:
        receipt = session.get(ScanReceipt, used["receipt"])
        request = session.exec(
            select(ApprovalRequest).where(ApprovalRequest.uid == used["approval"])
        ).first()
        decisions = approvals.decisions_of(session, request) if request else []
        entries.append(
            {
                **used,
                "scan": {
                    "receipt": used["receipt"],
                    "verdict": receipt.verdict if receipt else None,
                    "counts": receipt.counts if receipt else None,
                    "scanner": receipt.scanner if receipt else None,
                    "rules_hash": used["rules_hash"],
                },
                "approval": {
                    "request": used["approval"],
                    "state": request.state if request else None,
                    "subject_digest": request.subject_digest if request else None,
                    "decisions": [
                        {
                            "reviewer": d.reviewer,
                            "role": d.role,
                            "decision": d.decision,
                            "time": format_time(d.decided_at),
                            "digest": d.digest,
                            "signature": d.signature,
                            "key_id": d.key_id,
                        }
                        for d in decisions
                    ],
                },
            }
        )
    return {
        "family": family.name,
        "domain": domain.name,
        "version": version.number,
        "uid": version.uid,
        "tax_year": version.tax_year,
        "status": version.status,
        "base_model": {
            "name": base.name,
            "weights_sha256": version.base_weights_hash,
            "source": base.source,
            "license": base.license,
            "approval": version.training_config.get("base_approval"),
        },
        "datasets": entries,
        "policy_hash": version.policy_hash,
        "training_config": version.training_config,
        "code_version": version.code_version,
        "trained_by": version.trained_by,
        "adapter_manifest": version.adapter_manifest,
        "metrics": version.metrics,
        "evaluation": version.evaluation,
        "parent": {"version": parent.number, "uid": parent.uid} if parent else None,
        # Differential privacy, where the version was trained with it: what its accountant
        # spent, per unit of privacy (only then: the digests of other versions stay as they were).
        **(
            {"privacy": version.metrics.get("privacy") or version.training_config["privacy"]}
            if version.training_config.get("privacy")
            else {}
        ),
    }


def lineage_digest(document: dict[str, Any]) -> str:
    """The digest of what made the version; status is left out, since it changes later."""
    return hashlib.sha256(
        canonical({k: v for k, v in document.items() if k != "status"})
    ).hexdigest()


def signed_lineage(session: Session, version: ModelVersion, key: Ed25519PrivateKey) -> dict:
    return sign_lineage(lineage(session, version), key)


def sign_lineage(document: dict[str, Any], key: Ed25519PrivateKey) -> dict:
    """A lineage document with its digest and the service key's signature over it."""
    digest = lineage_digest(document)
    return {
        **document,
        "digest": digest,
        "signature": key.sign(bytes.fromhex(digest)).hex(),
        "key_id": key_id(key.public_key()),
    }


def register_subject_kind() -> None:
    """Register how a promotion request recomputes its subject's digest (at start-up)."""
    subjects.register(subjects.MODEL_PROMOTION, promotion_now)


def promotion_now(session: Session, request, policy_dir: Path) -> str | None:
    family_name, _, number = request.subject.removeprefix("model-version/").rpartition("/")
    found = find_family(session, family_name)
    if found is None:
        return None
    version = session.exec(
        select(ModelVersion).where(
            ModelVersion.family_id == found[0].id, ModelVersion.number == int(number)
        )
    ).first()
    if version is None or version.status in (VersionState.TAINTED, VersionState.FAILED):
        return None
    return lineage_digest(lineage(session, version))


# --- promotion, rollback, taint ---------------------------------------------------------------


def request_promotion(
    session: Session, family: ModelFamily, version: ModelVersion, rules, *, actor: Actor
):
    """Open the promotion request; the trainer may not approve it."""
    if version.status not in (VersionState.EVALUATED, VersionState.PENDING_APPROVAL):
        raise Conflict(
            f"version {version.number} is {version.status}; only an evaluated version that "
            "passed its gate can be promoted",
            details={"status": version.status, "evaluation": version.evaluation.get("gate")},
            code="not_evaluated",
        )
    domain = session.get(Domain, family.domain_id)
    document = lineage(session, version)
    production = production_version(session, family, version.base_model_id)
    request = approvals.open_request(
        session,
        domain,
        approvals.MODEL_PROMOTION,
        f"model-version/{family.name}/{version.number}",
        lineage_digest(document),
        family.name,
        {
            "version": version.number,
            "tax_year": version.tax_year,
            "evidence": {
                "lineage": document,
                "evaluation": version.evaluation,
                "production": (
                    {"version": production.number, "evaluation": production.evaluation}
                    if production
                    else None
                ),
            },
        },
        rules,
        actor=actor,
        also_excluded=(version.trained_by,),
    )
    if request.state == "pending":
        version.status = VersionState.PENDING_APPROVAL
        session.add(version)
    return request


def promote(
    session: Session,
    family: ModelFamily,
    version: ModelVersion,
    policy_dir: Path,
    *,
    actor: Actor,
    sign: Callable[[ModelVersion, BaseModelRecord], str],
) -> ModelVersion:
    """Put an approved version in production, its adapter signed (`sign`: the runtime's
    sign_version); the previous one is retired (kept for rollback)."""
    if version.status not in (VersionState.EVALUATED, VersionState.PENDING_APPROVAL):
        raise Conflict(
            f"version {version.number} is {version.status} and cannot be promoted",
            details={"status": version.status},
        )
    approval = approvals.approved_request(
        session,
        approvals.MODEL_PROMOTION,
        f"model-version/{family.name}/{version.number}",
        family.name,
        policy_dir,
        actor,
    )
    if approval is None:
        raise Conflict(
            f"version {version.number} has no approved promotion request: ask for one "
            f"(govern version promote {family.name} {version.number} --request, or POST "
            f".../versions/{version.number}/promotion); its reviewers decide it in "
            "`govern approvals inbox`",
            details={"family": family.name, "version": version.number},
            code="not_approved",
        )
    # Lock the family's versions so two promotions cannot leave two in production.
    session.execute(
        sa.update(ModelFamily).where(ModelFamily.id == family.id).values(seed=ModelFamily.seed)
    )
    old = production_version(session, family, version.base_model_id)
    if old is not None:
        old.status = VersionState.RETIRED
        session.add(old)
    base = session.get(BaseModelRecord, version.base_model_id)
    version.adapter_signature = sign(version, base)
    version.status = VersionState.PRODUCTION
    version.promoted_at = utcnow()
    session.add(version)
    domain = session.get(Domain, family.domain_id)
    record(
        session,
        actor,
        "model.promote",
        f"model/{family.name}",
        domain.name,
        details={
            "version": version.number,
            "replaces": old.number if old else None,
            "approval": approval.uid,
            "variant": base.name,
            "signature_sha256": hashlib.sha256(version.adapter_signature.encode()).hexdigest(),
        },
    )
    return version


def rollback(
    session: Session,
    family: ModelFamily,
    *,
    actor: Actor,
    base_model_id: int | None = None,
    reason: str | None = None,
) -> ModelVersion:
    """Retire a variant's production version and put its previous untainted one back;
    `reason` is kept on the retired version and in the audit entry."""
    current = production_version(session, family, base_model_id)
    if current is None:
        raise Conflict(f"{family.name} has no production version to roll back")
    previous = session.exec(
        select(ModelVersion)
        .where(
            ModelVersion.family_id == family.id,
            ModelVersion.status == VersionState.RETIRED,
            ModelVersion.base_model_id == current.base_model_id,
            ModelVersion.number < current.number,
        )
        .order_by(ModelVersion.number.desc())
    ).first()
    if previous is None:
        raise Conflict(f"{family.name} has no earlier untainted version to roll back to")
    current.status = VersionState.RETIRED
    current.status_reason = (
        f"rolled back by {actor.principal}" + (f": {reason}" if reason else "")
    )[:500]
    previous.status = VersionState.PRODUCTION
    previous.promoted_at = utcnow()
    session.add(current)
    session.add(previous)
    domain = session.get(Domain, family.domain_id)
    record(
        session,
        actor,
        "model.rollback",
        f"model/{family.name}",
        domain.name,
        details={"from": current.number, "to": previous.number, "reason": reason},
    )
    return previous
