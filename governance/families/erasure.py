"""Erasure reports: what a dataset version's deletion did to the models trained on it.

The report names the deleted version (its tombstone), every model version trained on it,
what each was before it was tainted, and the audit entries of the deletion and the taints,
with their sequence numbers and leaf hashes so that an auditor can match them against an
audit bundle. It is signed: an Ed25519 signature by the service key over the SHA-256 of the
canonical JSON of everything but the signature fields.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from audit.log import canonical, key_id
from governance import crypto
from governance.audit.models import AuditEntry
from governance.audit.service import format_time
from governance.datasets.models import DatasetVersion, VersionStatus
from governance.db import utcnow
from governance.errors import Conflict, NotFound
from governance.families.models import ModelFamily, ModelVersion


def erasure_report(session: Session, uid: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Build and sign the erasure report of a deleted dataset version."""
    version = session.exec(select(DatasetVersion).where(DatasetVersion.uid == uid)).first()
    if version is None:
        raise NotFound(f"no dataset version {uid}", details={"uid": uid})
    if version.status != VersionStatus.DELETED:
        raise Conflict(f"dataset version {uid} is not deleted", details={"uid": uid})
    affected = []
    for model in session.exec(select(ModelVersion).order_by(ModelVersion.id)).all():
        if any(used["uid"] == uid for used in model.datasets):
            family = session.get(ModelFamily, model.family_id)
            affected.append(
                {
                    "family": family.name,
                    "version": model.number,
                    "uid": model.uid,
                    "tax_year": model.tax_year,
                    "status": model.status,
                    "tainted_at": format_time(model.tainted_at) if model.tainted_at else None,
                    "reason": model.status_reason,
                }
            )
    actions = []
    for entry in session.exec(
        select(AuditEntry)
        .where(AuditEntry.action.in_(("dataset.delete", "model.taint")))
        .order_by(AuditEntry.seq)
    ).all():
        details = json.loads(entry.details) if isinstance(entry.details, str) else entry.details
        details = details or {}
        if details.get("uid") == uid or details.get("dataset_version") == uid:
            actions.append(
                {
                    "seq": entry.seq,
                    "time": format_time(entry.time),
                    "principal": entry.principal,
                    "action": entry.action,
                    "object": entry.object,
                    "details": details,
                    "leaf_hash": entry.leaf_hash,
                }
            )
    report = {
        "kind": "erasure-report",
        "generated_at": format_time(utcnow()),
        "dataset_version": {
            "uid": version.uid,
            "dataset_id": version.dataset_id,
            "version": version.number,
            "tax_year": version.tax_year,
            "content_hash": version.content_hash,
            "deleted_by": version.deleted_by,
            "deleted_at": format_time(version.deleted_at),
            "reason": version.delete_reason,
            "key_destroyed": version.wrapped_key is None,
        },
        "affected_model_versions": affected,
        "actions": actions,
        # What was destroyed, as the deletion recorded it: keys, blobs and derived rows.
        "destroyed": destroyed(version, actions),
    }
    digest = hashlib.sha256(canonical(report)).hexdigest()
    return {
        **report,
        "digest": digest,
        "signature": key.sign(bytes.fromhex(digest)).hex(),
        "key_id": key_id(key.public_key()),
        "public_key": crypto.public_key_pem(key.public_key()).decode(),
    }


def destroyed(version: DatasetVersion, actions: list[dict[str, Any]]) -> dict[str, Any]:
    """The destroyed material of a deleted version, from its deletion's audit entry."""
    deletion = next((a["details"] for a in actions if a["action"] == "dataset.delete"), {})
    return {
        "data_key": version.wrapped_key is None,
        "encrypted_records": version.blob_key is None,
        "sanitized_views": deletion.get("sanitized_views_destroyed"),
        "scan_cache_rows": deletion.get("scan_cache_rows_deleted"),
        "keyed_hashes": "scan cache keys and prompt hashes are HMACs under the domain's "
        "content key; the rows of this version were deleted",
    }


def verify_erasure_report(report: dict[str, Any]) -> bool:
    """Check a report's digest and signature against the public key it carries."""
    from audit.log import load_public_key

    body = {
        k: v for k, v in report.items() if k not in ("digest", "signature", "key_id", "public_key")
    }
    if hashlib.sha256(canonical(body)).hexdigest() != report.get("digest"):
        return False
    try:
        load_public_key(report["public_key"].encode()).verify(
            bytes.fromhex(report["signature"]), bytes.fromhex(report["digest"])
        )
    except Exception:
        return False
    return True
