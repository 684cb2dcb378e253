"""Scan receipts, the sanitized view, the quarantine, the labelled sample, and the gate.

The scan itself is `governance.pii.scanning` (a map over a version's shards and a reduce).
Workers only ever receive the sanitized view. A version may train only when its newest
receipt under the rules in force says pass or redacted; a scanner failure yields an `error`
receipt and the gate stays shut (fail closed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session, col, select

from governance.audit.service import Actor, record
from governance.crypto import open_sealed
from governance.datasets.models import DatasetVersion
from governance.datasets.records import read_blob
from governance.db import utcnow
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict, InvalidInput, NotFound
from governance.pii.estimate import estimate
from governance.pii.models import (
    QuarantineDecision,
    QuarantinedRecord,
    RecallLabel,
    ReceiptRead,
    ScanReceipt,
    Verdict,
)
from governance.pii.rules import DomainRules
from governance.pii.scanning import (
    cached_findings,
    label_aad,
    sanitized_uid,
    scan_version,
    unflagged_aad,
    view_shard_key,
    view_shard_uid,
)
from governance.storage import BlobStore

__all__ = ["cached_findings", "scan_version"]


def list_quarantine(session: Session, version: DatasetVersion) -> list[QuarantinedRecord]:
    return list(
        session.exec(
            select(QuarantinedRecord)
            .where(QuarantinedRecord.version_id == version.id)
            .order_by(QuarantinedRecord.record_index)
        )
    )


def decide_quarantine(
    session: Session,
    version: DatasetVersion,
    domain: Domain,
    record_index: int,
    decision: str,
    *,
    actor: Actor,
    comment: str | None = None,
) -> QuarantinedRecord:
    """A steward keeps or drops a held-back record; it takes effect at the next scan."""
    row = session.exec(
        select(QuarantinedRecord).where(
            QuarantinedRecord.version_id == version.id,
            QuarantinedRecord.record_index == record_index,
        )
    ).first()
    if row is None:
        raise NotFound(f"record {record_index} of this version is not in quarantine")
    if decision not in QuarantineDecision.ALL:
        raise InvalidInput("decision must be keep or drop", details={"field": "decision"})
    row.decision, row.decided_by, row.decided_at = decision, actor.principal, utcnow()
    row.comment = comment
    session.add(row)
    record(
        session,
        actor,
        f"quarantine.{decision}",
        f"dataset-version/{version.uid}",
        domain.name,
        details={
            "record_index": record_index,
            "residuals": row.residuals,
            "commented": bool(comment),
        },
    )
    return row


def latest_receipts(session: Session, version_ids: list[int]) -> dict[int, ScanReceipt]:
    """The latest receipt of each of these versions (one query), by version id."""
    receipts: dict[int, ScanReceipt] = {}
    if version_ids:
        for row in session.exec(
            select(ScanReceipt)
            .where(col(ScanReceipt.version_id).in_(version_ids))
            .order_by(ScanReceipt.id)
        ):
            receipts[row.version_id] = row
    return receipts


def latest_receipt(session: Session, version: DatasetVersion, rules_hash: str | None = None):
    query = select(ScanReceipt).where(ScanReceipt.version_id == version.id)
    if rules_hash is not None:
        query = query.where(ScanReceipt.rules_hash == rules_hash)
    return session.exec(query.order_by(ScanReceipt.id.desc())).first()


def require_trainable(session: Session, version: DatasetVersion, rules: DomainRules) -> ScanReceipt:
    """The gate: return the passing receipt under the rules in force, or refuse."""
    receipt = latest_receipt(session, version, rules.hash)
    if receipt is None:
        raise Conflict(
            f"dataset version {version.uid} has no scan under the current PII rules",
            details={"uid": version.uid, "rules_hash": rules.hash},
            code="not_scanned",
        )
    if receipt.verdict not in Verdict.TRAINABLE or receipt.content_hash != version.content_hash:
        raise Conflict(
            f"dataset version {version.uid} may not train: scan verdict {receipt.verdict}",
            details={"uid": version.uid, "receipt": receipt.id, "verdict": receipt.verdict},
            code="scan_gate",
        )
    return receipt


def sanitized_key(session: Session, keyring: KeyRing, receipt: ScanReceipt) -> tuple[bytes, str]:
    """Unwrap the data key of a receipt's sanitized view; return it with the scan's uid.

    The caller checks first that the view still exists (its wrapped key goes with erasure)."""
    domain = session.get(Domain, receipt.domain_id)
    name = receipt.sanitized_blob_key.rsplit("/", 1)[1]
    uid = name.removesuffix(".sanitized.blob").removesuffix(".sanitized")
    key = keyring.open_data_key(session, domain, sanitized_uid(uid), receipt.sanitized_wrapped_key)
    return key, uid


def view_blobs(receipt: ScanReceipt, uid: str) -> list[tuple[str, str]]:
    """Where a receipt's sanitized view is stored and what each blob is sealed under, in
    order: one blob per shard, or the one blob of a view stored whole."""
    if not receipt.sanitized_shards:
        return [(receipt.sanitized_blob_key, sanitized_uid(uid))]
    return [
        (view_shard_key(receipt.sanitized_blob_key, ordinal), view_shard_uid(uid, ordinal))
        for ordinal in range(len(receipt.sanitized_shards))
    ]


def unflagged_sample(
    session: Session, keyring: KeyRing, receipt: ScanReceipt
) -> list[dict[str, str]] | None:
    """The sealed sample of records the scan found nothing in; None once shredded or absent."""
    return _open_sample(session, keyring, receipt, receipt.unflagged_sealed, unflagged_aad)


def _open_sample(session, keyring, receipt, sealed: bytes | None, aad) -> Any:
    """A sample sealed under a receipt's sanitized-view key; None once shredded or absent."""
    if sealed is None or receipt.sanitized_wrapped_key is None:
        return None
    key, uid = sanitized_key(session, keyring, receipt)
    return json.loads(open_sealed(key, sealed, aad(uid)))


def iter_sanitized(
    session: Session, keyring: KeyRing, store: BlobStore, receipt: ScanReceipt
) -> Iterator[dict[str, Any]]:
    """Yield the sanitized records of a receipt: the only view a worker ever gets."""
    if receipt.sanitized_blob_key is None or receipt.sanitized_wrapped_key is None:
        raise Conflict(
            "the sanitized view is gone: its dataset version was deleted",
            details={"receipt": receipt.id},
            code="erased",
        )
    key, uid = sanitized_key(session, keyring, receipt)
    for blob_key, sealed_as in view_blobs(receipt, uid):
        with store.open(blob_key) as handle:
            yield from read_blob(handle, key, sealed_as)


def receipt_read(receipt: ScanReceipt, version: DatasetVersion, current_hash: str) -> dict:
    """A receipt as the API and the CLI show it: counts and redacted samples, no keys."""
    return ReceiptRead(
        dataset_version=version.uid,
        current_rules=receipt.rules_hash == current_hash,
        **receipt.model_dump(
            exclude={
                "version_id",
                "domain_id",
                "sanitized_blob_key",
                "sanitized_wrapped_key",
                "unflagged_sealed",
                "label_sealed",
            }
        ),
    ).model_dump(mode="json")


def scanned_receipt(session: Session, version: DatasetVersion) -> ScanReceipt:
    """The version's latest receipt; a version never scanned has none to label (404)."""
    receipt = latest_receipt(session, version)
    if receipt is None:
        raise NotFound("this version has not been scanned", details={"field": "number"})
    return receipt


def label_sample_read(session: Session, keyring: KeyRing, receipt: ScanReceipt) -> dict[str, Any]:
    """The labelling sample as the API, the CLI and the console show it."""
    return {
        "receipt": receipt.id,
        "items": label_items(session, keyring, receipt),
        "estimate": receipt.recall_estimate,
    }


def label_items(session: Session, keyring: KeyRing, receipt: ScanReceipt) -> list[dict[str, Any]]:
    """The sampled records of a receipt for a steward to label: the text as a worker receives
    it, digits shown as # (the shape of a missed identifier shows; its value does not), the
    values the scan replaced, and any label given. Empty once the view is shredded or the
    receipt's samples pruned."""
    texts = _open_sample(session, keyring, receipt, receipt.label_sealed, label_aad)
    if not texts:
        return []
    labels = {
        label.position: label
        for label in session.exec(select(RecallLabel).where(RecallLabel.receipt_id == receipt.id))
    }
    items = []
    for drawn, text in zip(receipt.label_sample, texts, strict=True):
        label = labels.get(drawn["position"])
        items.append(
            {
                **drawn,
                "text": text,
                "missed": label.missed if label else None,
                "labelled_by": label.labelled_by if label else None,
            }
        )
    return items


def label_record(
    session: Session,
    receipt: ScanReceipt,
    domain: Domain,
    position: int,
    missed: int,
    *,
    actor: Actor,
    comment: str | None = None,
) -> dict[str, Any]:
    """A steward labels one sampled record: how many personal values it still shows. The
    receipt's recall estimate is recomputed from every label; the label is audited."""
    redacted = {d["position"]: d["redacted"] for d in receipt.label_sample or []}.get(position)
    if redacted is None:
        raise NotFound(
            f"record {position} is not in the labelling sample of receipt {receipt.id}",
            details={"field": "position"},
        )
    row = session.exec(
        select(RecallLabel).where(
            RecallLabel.receipt_id == receipt.id, RecallLabel.position == position
        )
    ).first() or RecallLabel(
        receipt_id=receipt.id,
        position=position,
        redacted=redacted,
        missed=missed,
        labelled_by=actor.principal,
    )
    row.missed, row.comment, row.labelled_by, row.labelled_at = (
        missed,
        comment,
        actor.principal,
        utcnow(),
    )
    session.add(row)
    session.flush()
    labels = [
        (r.redacted, r.missed)
        for r in session.exec(select(RecallLabel).where(RecallLabel.receipt_id == receipt.id))
    ]
    receipt.recall_estimate = estimate(labels, len(receipt.label_sample))
    session.add(receipt)
    version = session.get(DatasetVersion, receipt.version_id)
    record(
        session,
        actor,
        "scan.label",
        f"dataset-version/{version.uid}",
        domain.name,
        details={"receipt": receipt.id, "position": position, "missed": missed},
    )
    return dict(receipt.recall_estimate)


def require_recall(receipt: ScanReceipt, rules: DomainRules) -> None:
    """Before an approval to train may be requested: the domain's labelled sample is complete
    and the 95% lower bound of the recall it estimates meets the rules'."""
    if not rules.label_sample:
        return
    figures = receipt.recall_estimate or {}
    bound = rules.gate["recall_lower_bound"]
    if not figures.get("complete"):
        raise Conflict(
            f"a steward has labelled {figures.get('labelled', 0)} of the "
            f"{len(receipt.label_sample or [])} sampled records of receipt {receipt.id}; "
            "label them all (console: the version's PII gate page, or `govern dataset label`)",
            details={"receipt": receipt.id},
            code="recall_unlabelled",
        )
    low = figures.get("recall_lower_bound")
    if low is not None and low < bound:
        raise Conflict(
            f"the labelled sample estimates recall {figures['recall']} with a 95% lower bound "
            f"of {low}, below the domain's {bound}",
            details={"receipt": receipt.id, "recall_estimate": figures},
            code="recall_unproven",
        )
