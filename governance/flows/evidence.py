"""Write an evidence pack for an auditor or a regulator (verified by `audit.evidence`).

For a period (and optionally one model family): the audit bundle of the period's entries
with its checkpoints; who-may and who-did reports; the signed lineage, ML-BOM, model card and
model signature of every version promoted by the period's end; the approval requests of the
period with their signed decisions; the scan receipts (counts, never values) and erasure
reports; the OpenLineage events of the period. `index.json` lists every file with its
SHA-256 and the EU AI Act duty it answers (Annex IV: technical documentation; Article 12:
record-keeping), and is signed with the service key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from audit.bundle import pack
from audit.evidence import BUNDLE_DIR, INDEX, KIND, SIGNATURE
from audit.log import key_id
from governance.approvals.models import ApprovalRequest
from governance.approvals.service import request_read
from governance.audit.models import AuditEntry
from governance.audit.openlineage import lineage_events
from governance.audit.service import format_time
from governance.authz.policy import PolicySet
from governance.datasets.models import DatasetVersion, VersionStatus
from governance.db import utcnow
from governance.domains.models import Domain
from governance.errors import InvalidInput
from governance.families.erasure import erasure_report
from governance.families.mlbom import mlbom, model_card
from governance.families.models import ModelFamily, ModelVersion
from governance.families.service import lineage, sign_lineage
from governance.flows.access_reports import build_report
from governance.flows.log_export import EntryFilter, write_bundle
from governance.pii.models import ScanReceipt

# What each kind of file answers (EU AI Act, Regulation (EU) 2024/1689).
ANSWERS: dict[str, list[str]] = {
    "audit-bundle": [
        "Art. 12(1): automatic recording of events over the system's lifetime",
        "Art. 12(2): traceability of the system's functioning (who queried which model)",
        "Art. 19 / Art. 26(6): logs kept by the provider and the deployer",
    ],
    "who-may": [
        "Annex IV 2(e): human oversight measures (who may query, approve, promote)",
        "Art. 14: human oversight",
    ],
    "who-did": [
        "Art. 12(3)(a),(d): period of each use and the persons involved",
    ],
    "lineage": [
        "Annex IV 2(b): design specifications and key choices (base model, LoRA recipe)",
        "Annex IV 2(d): data requirements, provenance and preparation",
    ],
    "mlbom": [
        "Annex IV 1(a),(c): general description, versions of relevant software and models",
        "Annex IV 2(a): methods and steps of development, use of pre-trained systems",
    ],
    "model-card": [
        "Annex IV 1: general description and intended purpose",
        "Annex IV 3: capabilities, limitations and foreseeable misuse",
        "Annex IV 4: appropriateness of the performance metrics",
    ],
    "model-signature": [
        "Annex IV 2(b): the exact artifact deployed (integrity, Art. 15 cybersecurity)",
    ],
    "approval": [
        "Annex IV 2(e): human oversight; Annex IV 6: changes made through the lifecycle",
    ],
    "scan-receipt": [
        "Annex IV 2(d): data preparation (personal data found and removed)",
        "Art. 10(5): safeguards for personal data",
    ],
    "erasure-report": [
        "Art. 10: data governance (deletion and its propagation to trained models)",
    ],
    "openlineage": [
        "Annex IV 2(d): data provenance, in OpenLineage's standard event format",
        "Art. 12(2): traceability",
    ],
}


# What of a receipt is record text, sealed or not: never copied into a pack, so a pack holds
# nothing that erasing the version would have to reach (a pack, once handed over, cannot be).
RECEIPT_TEXT = {"samples", "unflagged_sealed", "label_sealed", "sanitized_wrapped_key"}


def parse_period(text: str) -> tuple[dt.datetime, dt.datetime]:
    """`2026-01-01..2026-12-31` -> the first instant and the end of the last day (UTC)."""
    try:
        first, _, last = text.partition("..")
        start = dt.datetime.combine(dt.date.fromisoformat(first), dt.time(), dt.UTC)
        end = dt.datetime.combine(dt.date.fromisoformat(last), dt.time.max, dt.UTC)
    except ValueError as exc:
        raise InvalidInput(
            f"period {text!r}: expected FROM..TO as dates (2026-01-01..2026-12-31)",
            details={"field": "period"},
        ) from exc
    if end < start:
        raise InvalidInput("the period ends before it starts", details={"field": "period"})
    return start, end


class _Pack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[dict[str, Any]] = []

    def add(self, relative: str, data: bytes | str, kind: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        self.list(relative, kind)

    def add_json(self, relative: str, document: Any, kind: str) -> None:
        self.add(relative, json.dumps(document, indent=2, sort_keys=True, default=str), kind)

    def list(self, relative: str, kind: str) -> None:
        path = self.root / relative
        self.items.append(
            {
                "path": relative,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "bytes": path.stat().st_size,
                "kind": kind,
                "answers": ANSWERS[kind],
            }
        )


def write_evidence_pack(
    session: Session,
    out: Path,
    key: Ed25519PrivateKey,
    policy: PolicySet,
    period: str,
    family: str | None = None,
    *,
    tree=None,
    origin: str | None = None,
    witnesses=(),
) -> dict[str, Any]:
    """Write the pack to `out` (.tar.gz, or a directory); return its index."""
    start, end = parse_period(period)
    chosen = None
    if family is not None:
        chosen = session.exec(select(ModelFamily).where(ModelFamily.name == family)).first()
        if chosen is None:
            raise InvalidInput(f"no model family {family!r}", details={"field": "family"})
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "pack"
        root.mkdir()
        items = _Pack(root)
        entry_filter = EntryFilter(from_time=start, to_time=end)
        bundle = write_bundle(
            session, entry_filter, root / BUNDLE_DIR, key, tree, origin=origin, witnesses=witnesses
        )
        for path in sorted((root / BUNDLE_DIR).rglob("*")):
            if path.is_file():
                items.list(path.relative_to(root).as_posix(), "audit-bundle")
        domains = [d.name for d in session.exec(select(Domain)).all()]
        for kind in ("who-may", "who-did"):
            body, _csv, _signature = build_report(kind, session, policy, key, entry_filter, ["*"])
            items.add_json(f"reports/{kind}.json", body, kind)
        versions = session.exec(
            select(ModelVersion)
            .where(ModelVersion.promoted_at.is_not(None), ModelVersion.promoted_at <= end)
            .order_by(ModelVersion.id)
        ).all()
        for version in versions:
            owner = session.get(ModelFamily, version.family_id)
            if chosen is not None and owner.id != chosen.id:
                continue
            where = f"models/{owner.name}/v{version.number}"
            document = lineage(session, version)  # read once; serves all three
            items.add_json(f"{where}/lineage.json", sign_lineage(document, key), "lineage")
            items.add_json(f"{where}/mlbom.cdx.json", mlbom(session, version, document), "mlbom")
            markdown, card = model_card(session, version, document)
            items.add(f"{where}/MODEL_CARD.md", markdown, "model-card")
            items.add_json(f"{where}/model-card.json", card, "model-card")
            if version.adapter_signature:
                items.add(f"{where}/adapter.sig", version.adapter_signature, "model-signature")
        requests = session.exec(
            select(ApprovalRequest)
            .where(ApprovalRequest.requested_at >= start, ApprovalRequest.requested_at <= end)
            .order_by(ApprovalRequest.id)
        ).all()
        for request in requests:
            if chosen is not None and request.family not in (chosen.name, ""):
                continue
            items.add_json(
                f"approvals/{request.uid}.json",
                {**request_read(session, request), "summary": request.summary},
                "approval",
            )
        receipts = session.exec(
            select(ScanReceipt)
            .where(ScanReceipt.created_at >= start, ScanReceipt.created_at <= end)
            .order_by(ScanReceipt.id)
        ).all()
        for receipt in receipts:
            items.add_json(
                f"scans/receipt-{receipt.id}.json",
                receipt.model_dump(exclude=RECEIPT_TEXT),
                "scan-receipt",
            )
        for deleted in session.exec(
            select(DatasetVersion).where(
                DatasetVersion.status == VersionStatus.DELETED,
                DatasetVersion.deleted_at >= start,
                DatasetVersion.deleted_at <= end,
            )
        ).all():
            items.add_json(
                f"erasure/{deleted.uid}.json",
                erasure_report(session, deleted.uid, key),
                "erasure-report",
            )
        entries = session.exec(
            select(AuditEntry)
            .where(AuditEntry.time >= start, AuditEntry.time <= end)
            .order_by(AuditEntry.seq)
        ).all()
        events = "".join(json.dumps(e, sort_keys=True) + "\n" for e in lineage_events(entries))
        items.add("openlineage/events.jsonl", events, "openlineage")
        index = {
            "kind": KIND,
            "period": period,
            "family": family,
            "domains": sorted(domains),
            "generated_at": format_time(utcnow()),
            "key_id": key_id(key.public_key()),
            "audit_bundle": {"entries": bundle["entries"], "tree_size": bundle["tree_size"]},
            "regulation": "Regulation (EU) 2024/1689 (AI Act): Annex IV and Article 12",
            "items": items.items,
        }
        raw = json.dumps(index, indent=2, sort_keys=True).encode()
        (root / INDEX).write_bytes(raw)
        (root / SIGNATURE).write_text(key.sign(hashlib.sha256(raw).digest()).hex() + "\n")
        out = Path(out)
        if out.name.endswith((".tar.gz", ".tgz")):
            pack(root, out)
        else:
            shutil.copytree(root, out)
    return index
