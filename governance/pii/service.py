"""Scan a dataset version: receipt, encrypted sanitized view, incremental cache, the gate.

Workers only ever receive the sanitized view. A version may train only when its newest
receipt under the rules in force says pass or redacted; a scanner failure yields an `error`
receipt and the gate stays shut (fail closed).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlmodel import Session, col, select

from audit.log import canonical
from governance.audit.service import Actor, record
from governance.crypto import open_sealed, seal
from governance.datasets.models import DatasetVersion, VersionStatus
from governance.datasets.records import TEXT_FIELDS, BlobWriter, read_blob
from governance.datasets.service import iter_version_records
from governance.db import on_commit, on_rollback, utcnow
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict, InvalidInput, NotFound
from governance.pii import canaries
from governance.pii.cache import content_key, keyed_hash, remember
from governance.pii.estimate import estimate, placeholders
from governance.pii.models import (
    QuarantineDecision,
    QuarantinedRecord,
    RecallLabel,
    ReceiptRead,
    ScanCacheEntry,
    ScanReceipt,
    Verdict,
)
from governance.pii.rules import DomainRules
from governance.pii.sanitize import mask_residuals, sanitize
from governance.pii.scanner import Finding, TextScanner, record_text, split_findings
from governance.storage import BlobStore

log = logging.getLogger(__name__)

SAMPLES = 5
SAMPLE_CHARS = 300
CACHE_BATCH = 500
CANARY_HOSTS = 20


def sanitized_uid(receipt_uid: str) -> str:
    return f"{receipt_uid}.sanitized"


def cache_key(scanner: TextScanner, rules: DomainRules) -> str:
    """What a cached finding depends on: the rules and the scanner that applied them."""
    return hashlib.sha256(
        f"{rules.hash}/{scanner.versions.get('scanner')}/{scanner.versions.get('model')}".encode()
    ).hexdigest()


def cached_findings(
    session: Session,
    scanner: TextScanner,
    rules: DomainRules,
    records: Iterable[dict[str, Any]],
    stats: Counter,
    hash_key: bytes,
) -> Iterator[tuple[dict[str, Any], list[Finding]]]:
    """Yield each record with its findings per field, scanning only records not yet seen.

    A record is scanned as the trainer reads it, prompt and completion joined; the cache is
    keyed by the HMAC of that joined text under the domain's content key (`pii.cache`) and by
    the rules and scanner, so a refresh that changes only a record's metadata rescans nothing.
    It holds offsets and types, never text.
    """
    key = cache_key(scanner, rules)
    iterator = iter(records)
    while True:
        block = list(itertools.islice(iterator, CACHE_BATCH))
        if not block:
            return
        joined = [record_text(rec) for rec in block]
        hashes = [keyed_hash(hash_key, text) for text, _layout in joined]
        known = {
            entry.text_hash: entry.findings
            for entry in session.exec(
                select(ScanCacheEntry).where(
                    ScanCacheEntry.rules_hash == key,
                    ScanCacheEntry.text_hash.in_(set(hashes)),
                )
            )
        }
        missing = {
            digest: text
            for (text, _layout), digest in zip(joined, hashes, strict=True)
            if digest not in known
        }
        scanned = scanner.scan_texts(list(missing.values()), rules)
        found = {}
        for (digest, _text), findings in zip(missing.items(), scanned, strict=True):
            found[digest] = [[f.start, f.end, f.entity_type, round(f.score, 4)] for f in findings]
        remember(session, key, found)
        known.update(found)
        stats["from_cache"] += len(block) - len(missing)
        stats["texts_scanned"] += len(missing)
        for index, (rec, (_text, layout), digest) in enumerate(
            zip(block, joined, hashes, strict=True)
        ):
            spans = [Finding(index, "text", *span) for span in known[digest]]
            yield rec, split_findings(index, spans, layout)


def measure_canaries(
    scanner: TextScanner, rules: DomainRules, sample: list[str]
) -> dict[str, list[int]]:
    """Plant a canary of every form in the sampled texts, scan, and count what was found.

    The planted copies exist only here; nothing of them is stored or cached.
    """
    rng = random.SystemRandom()
    planted = canaries.canaries(set(rules.entities), rng)
    if not planted:
        return {}
    hosts = sample or ["Question about my return."]
    texts, spans = [], []
    for canary in planted:
        text, start, end = canaries.plant(rng.choice(hosts), canary)
        texts.append(text)
        spans.append((start, end))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    scanned = scanner.scan_texts(texts, rules)
    for canary, (start, end), findings in zip(planted, spans, scanned, strict=True):
        counts[canary.entity][1] += 1
        if canaries.covered(findings, start, end):
            counts[canary.entity][0] += 1
    return dict(sorted(counts.items()))


def scan_version(
    session: Session,
    keyring: KeyRing,
    store: BlobStore,
    scanner: TextScanner,
    version: DatasetVersion,
    rules: DomainRules,
    *,
    actor: Actor,
    progress: Callable[[int], Any] | None = None,
) -> ScanReceipt:
    """Scan a version under the rules, store its sanitized view encrypted, and write a receipt.

    `progress(n)` is told of every n records scanned (for a progress bar). The caller commits
    the receipt; the sanitized blob is published then (and discarded should it roll back)."""
    if version.status != VersionStatus.READY:
        raise Conflict(f"dataset version {version.uid} was deleted", details={"uid": version.uid})
    domain = session.get(Domain, version.domain_id)
    uid = uuid.uuid4().hex
    receipt = ScanReceipt(
        version_id=version.id,
        domain_id=domain.id,
        rules_hash=rules.hash,
        content_hash=version.content_hash,
        scanner=dict(scanner.versions),
        verdict=Verdict.ERROR,
        created_by=actor.principal,
    )
    counts: dict[str, Counter] = defaultdict(Counter)
    stats: Counter = Counter()
    samples: list[dict[str, Any]] = []
    seen_samples: set[str] = set()
    sample_hosts: list[str] = []
    unflagged: list[dict[str, str]] = []
    unflagged_seen = 0
    quarantine: list[tuple[int, dict[str, int], dict[str, str]]] = []
    blocked = False
    decisions = {
        q.record_index: q.decision
        for q in session.exec(
            select(QuarantinedRecord).where(QuarantinedRecord.version_id == version.id)
        )
    }
    names = getattr(scanner, "names", None)
    rng = random.SystemRandom()
    # A reservoir sample of the released records (their position in the sanitized view and
    # the values redacted in them), for a steward to label.
    to_label: list[dict[str, int]] = []
    hash_key = content_key(keyring, session, domain)
    data_key, wrapped = keyring.new_data_key(session, domain, sanitized_uid(uid))
    try:
        with store.stage(uid) as staged:
            writer = BlobWriter(staged, data_key, sanitized_uid(uid))
            raw = iter_version_records(session, keyring, store, version)
            for index, (rec, findings) in enumerate(
                cached_findings(session, scanner, rules, raw, stats, hash_key)
            ):
                stats["total"] += 1
                if progress is not None:
                    progress(1)
                # A reservoir sample of the version's own texts hosts the canaries.
                if len(sample_hosts) < CANARY_HOSTS:
                    sample_hosts.append(record_text(rec)[0])
                elif (slot := rng.randrange(stats["total"])) < CANARY_HOSTS:
                    sample_hosts[slot] = record_text(rec)[0]
                for finding in findings:
                    counts[finding.entity_type][finding.field] += 1
                result = sanitize(rec, findings, rules, names)
                if result.blocked:
                    blocked = True
                if result.dropped:
                    stats["dropped"] += 1
                    continue
                clean = result.clean
                if result.residuals:
                    decision = decisions.get(index)
                    quarantine.append(
                        (
                            index,
                            result.residuals,
                            {k: mask_residuals(v) for k, v in clean.items()},
                            result.held,
                        )
                    )
                    if decision != QuarantineDecision.KEEP:
                        stats["quarantined" if decision is None else "dropped"] += 1
                        continue
                    stats["kept"] += 1
                if not findings and not result.residuals:
                    # A reservoir sample of what the scanner passed untouched, for reviewers.
                    unflagged_seen += 1
                    shown = {
                        f: mask_residuals(clean[f][:SAMPLE_CHARS])
                        for f in TEXT_FIELDS
                        if f in clean
                    }
                    if len(unflagged) < SAMPLES:
                        unflagged.append(shown)
                    elif (slot := rng.randrange(unflagged_seen)) < SAMPLES:
                        unflagged[slot] = shown
                if findings:
                    stats["redacted"] += 1
                    sample = {f: clean[f][:SAMPLE_CHARS] for f in TEXT_FIELDS if f in clean}
                    key = canonical(sample)
                    if len(samples) < SAMPLES and key not in seen_samples:
                        seen_samples.add(key)
                        samples.append(sample)
                if rules.label_sample:
                    position = writer.content.size
                    drawn = {
                        "position": position,
                        "redacted": placeholders(clean),
                        "text": {k: mask_residuals(v) for k, v in clean.items()},
                    }
                    if len(to_label) < rules.label_sample:
                        to_label.append(drawn)
                    elif (slot := rng.randrange(position + 1)) < rules.label_sample:
                        to_label[slot] = drawn
                if rules.unit_key:
                    # The customer, for DP training's unit of privacy: only a keyed hash.
                    value = (rec.get("metadata") or {}).get(rules.unit_key)
                    if value is not None and value != "":
                        clean = {**clean, "unit": keyed_hash(hash_key, f"unit:{value}")[:32]}
                writer.add(canonical(clean))
            writer.close()
            canary_counts = measure_canaries(scanner, rules, sample_hosts)
    except Exception as exc:  # Fail closed: any scanner or storage failure is an error receipt.
        session.rollback()
        log.exception("scan of dataset version %s failed", version.uid)
        receipt.error = f"{type(exc).__name__}: scan failed"[:500]
        session.add(receipt)
        record(
            session,
            actor,
            "scan.error",
            f"dataset-version/{version.uid}",
            domain.name,
            decision="failed",
            details={"rules_hash": rules.hash},
        )
        return receipt
    receipt.counts = {etype: dict(fields) for etype, fields in sorted(counts.items())}
    receipt.records_total = stats["total"]
    receipt.records_redacted = stats["redacted"]
    receipt.records_dropped = stats["dropped"]
    receipt.records_from_cache = stats["from_cache"]
    receipt.records_quarantined = stats["quarantined"]
    receipt.records_kept = stats["kept"]
    receipt.samples = samples
    receipt.unflagged_sealed = seal(data_key, canonical(unflagged), unflagged_aad(uid))
    receipt.canaries = canary_counts
    found = sum(f for f, _ in canary_counts.values())
    planted = sum(p for _, p in canary_counts.values())
    receipt.canary_recall = round(found / planted, 4) if planted else None
    receipt.sanitized_records = writer.content.size
    to_label.sort(key=lambda drawn: drawn["position"])
    receipt.label_sample = [
        {"position": d["position"], "redacted": d["redacted"]} for d in to_label
    ]
    if to_label:
        texts = [d["text"] for d in to_label]
        receipt.label_sealed = seal(data_key, canonical(texts), label_aad(uid))
    receipt.recall_estimate = estimate([], len(to_label)) if to_label else None
    receipt.sanitized_hash = writer.content.root().hex()
    reasons = []
    if receipt.canary_recall is not None and receipt.canary_recall < rules.gate["canary_recall"]:
        reasons.append(
            {
                "code": "canary_recall",
                "message": f"the scan found {found} of {planted} planted canaries, below the "
                f"domain's {rules.gate['canary_recall']}",
            }
        )
    share = stats["quarantined"] / stats["total"] if stats["total"] else 0.0
    if share > rules.gate["quarantine_share"]:
        reasons.append(
            {
                "code": "quarantine_share",
                "message": f"{stats['quarantined']} of {stats['total']} records await a "
                f"steward's review, above the domain's {rules.gate['quarantine_share']:.0%}",
            }
        )
    receipt.reasons = reasons
    if blocked:
        receipt.verdict = Verdict.BLOCKED
    elif reasons:
        receipt.verdict = Verdict.FAILED
    elif counts or stats["quarantined"]:
        receipt.verdict = Verdict.REDACTED
    else:
        receipt.verdict = Verdict.PASS
    key = f"{domain.name}/{uid}.sanitized.blob"
    receipt.sanitized_blob_key = key
    receipt.sanitized_wrapped_key = wrapped
    session.add(receipt)
    session.flush()
    _record_quarantine(session, version, receipt, quarantine)
    record(
        session,
        actor,
        "scan.complete",
        f"dataset-version/{version.uid}",
        domain.name,
        details={
            "receipt": receipt.id,
            "verdict": receipt.verdict,
            "rules_hash": rules.hash,
            "records": receipt.records_total,
            "from_cache": receipt.records_from_cache,
            "quarantined": receipt.records_quarantined,
            "canary_recall": receipt.canary_recall,
        },
    )
    # The sanitized blob is published when the caller commits the receipt, discarded if not.
    on_commit(session, lambda: store.publish(uid, key))
    on_rollback(session, lambda: store.discard(uid))
    return receipt


def _record_quarantine(session, version, receipt, held) -> None:
    """Keep one row per held-back record of the version, refreshed by every scan."""
    existing = {
        q.record_index: q
        for q in session.exec(
            select(QuarantinedRecord).where(QuarantinedRecord.version_id == version.id)
        )
    }
    for index, found, preview, spans in held:
        row = existing.get(index) or QuarantinedRecord(version_id=version.id, record_index=index)
        row.receipt_id, row.residuals, row.preview = receipt.id, found, preview
        row.spans = spans
        session.add(row)


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


def unflagged_aad(receipt_uid: str) -> bytes:
    return f"governance/unflagged-sample/{receipt_uid}".encode()


def label_aad(receipt_uid: str) -> bytes:
    return f"governance/label-sample/{receipt_uid}".encode()


def sanitized_key(session: Session, keyring: KeyRing, receipt: ScanReceipt) -> tuple[bytes, str]:
    """Unwrap the data key of a receipt's sanitized view; return it with the scan's uid.

    The caller checks first that the view still exists (its wrapped key goes with erasure)."""
    domain = session.get(Domain, receipt.domain_id)
    uid = receipt.sanitized_blob_key.rsplit("/", 1)[1].removesuffix(".sanitized.blob")
    key = keyring.open_data_key(session, domain, sanitized_uid(uid), receipt.sanitized_wrapped_key)
    return key, uid


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
    with store.open(receipt.sanitized_blob_key) as handle:
        yield from read_blob(handle, key, sanitized_uid(uid))


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
