"""Approval of a dataset version for training one model family (the `dataset-use` subject).

The request binds the version's content hash, its passing scan receipt under the rules in
force and the family; if any of these changes before a decision, the request is invalidated.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlmodel import Session, select

from audit.log import canonical
from governance.approvals import service as approvals
from governance.approvals import subjects
from governance.approvals.models import ApprovalRequest
from governance.approvals.rules import ApprovalRules
from governance.approvals.subjects import DATASET_USE
from governance.audit.service import Actor
from governance.datasets.models import Dataset, DatasetVersion, VersionStatus
from governance.domains.models import Domain
from governance.errors import Conflict, Forbidden, NotFound
from governance.families import privacy
from governance.families.models import ModelFamily
from governance.pii.rules import load_rules
from governance.pii.service import latest_receipt, require_recall, require_trainable


def register() -> None:
    """Register how a dataset-use request recomputes its subject's digest."""
    subjects.register(DATASET_USE, dataset_use_now)


def dataset_use_digest(version: DatasetVersion, receipt, family: str) -> str:
    return hashlib.sha256(
        canonical(
            {
                "kind": DATASET_USE,
                "dataset_version": version.uid,
                "content_hash": version.content_hash,
                "receipt": receipt.id,
                "rules_hash": receipt.rules_hash,
                "sanitized_hash": receipt.sanitized_hash,
                "family": family,
            }
        )
    ).hexdigest()


def dataset_use_now(session: Session, request: ApprovalRequest, policy_dir: Path) -> str | None:
    uid = request.subject.removeprefix("dataset-version/")
    version = session.exec(select(DatasetVersion).where(DatasetVersion.uid == uid)).first()
    if version is None or version.status != VersionStatus.READY:
        return None
    domain = session.get(Domain, version.domain_id)
    if domain is None:
        return None
    receipt = latest_receipt(session, version, load_rules(policy_dir, domain.name).hash)
    if receipt is None:
        return None
    return dataset_use_digest(version, receipt, request.family)


def request_dataset_use(
    session: Session,
    domain: Domain,
    dataset: Dataset,
    version: DatasetVersion,
    family: str,
    policy_dir: Path,
    rules: ApprovalRules,
    *,
    actor: Actor,
) -> ApprovalRequest:
    """Ask for approval to train `family` on this version; it must have passed its scan."""
    if version.domain_id != domain.id or dataset.domain_id != domain.id:
        raise Forbidden("the dataset version belongs to another domain")
    # The family must be this domain's; another domain's family is answered as a missing one.
    trains = session.exec(
        select(ModelFamily).where(ModelFamily.name == family, ModelFamily.domain_id == domain.id)
    ).first()
    if trains is None:
        raise NotFound(f"no model family {family!r}", details={"field": "family"})
    if version.status != VersionStatus.READY:
        raise Conflict(f"dataset version {version.uid} was deleted", details={"uid": version.uid})
    pii_rules = load_rules(policy_dir, domain.name)
    receipt = require_trainable(session, version, pii_rules)
    require_recall(receipt, pii_rules)
    summary = {
        "dataset": dataset.name,
        "dataset_id": dataset.id,
        "version": version.number,
        "tax_year": version.tax_year,
        "content_hash": version.content_hash,
        "records": version.record_count,
        "receipt": receipt.id,
        "verdict": receipt.verdict,
        "rules_hash": receipt.rules_hash,
        "sanitized_hash": receipt.sanitized_hash,
        "canary_recall": receipt.canary_recall,
        "recall_estimate": receipt.recall_estimate,
    }
    plan = privacy.plan(session, trains, domain, policy_dir)
    if plan is not None:
        # The reviewers of data for a DP family see what its next version may spend of the
        # domain's privacy budget (what is left, when less than the recipe's epsilon).
        summary["privacy_plan"] = plan
    return approvals.open_request(
        session,
        domain,
        DATASET_USE,
        f"dataset-version/{version.uid}",
        dataset_use_digest(version, receipt, family),
        family,
        summary,
        rules,
        actor=actor,
    )
