"""Scan a dataset version: receipt, encrypted sanitized view, incremental cache, the gate.

Workers only ever receive the sanitized view. A version may train only when its newest
receipt under the rules in force says pass or redacted; a scanner failure yields an `error`
receipt and the gate stays shut (fail closed).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from sqlmodel import Session, select

from audit.log import canonical
from governance.audit.service import Actor, record
from governance.datasets.models import DatasetVersion, VersionStatus
from governance.datasets.records import TEXT_FIELDS, BlobWriter, read_blob
from governance.datasets.service import iter_version_records
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict
from governance.pii.models import ReceiptRead, ScanCacheEntry, ScanReceipt, Verdict
from governance.pii.rules import DomainRules
from governance.pii.scanner import Finding, TextScanner
from governance.storage import LocalBlobStore

log = logging.getLogger(__name__)

SAMPLES = 5
SAMPLE_CHARS = 300
CACHE_BATCH = 500


def sanitized_uid(receipt_uid: str) -> str:
    return f"{receipt_uid}.sanitized"


def apply_findings(record_: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """Replace each finding's span with a typed placeholder such as <US_SSN>."""
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    engine = _anonymizer()
    clean = dict(record_)
    by_field: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_field[finding.field].append(finding)
    for field, items in by_field.items():
        operators = {
            f.entity_type: OperatorConfig("replace", {"new_value": f"<{f.entity_type}>"})
            for f in items
        }
        clean[field] = engine.anonymize(
            text=record_[field],
            analyzer_results=[
                RecognizerResult(f.entity_type, f.start, f.end, f.score) for f in items
            ],
            operators=operators,
        ).text
    return clean


@functools.cache
def _anonymizer():
    """One anonymizer engine per process; it keeps no state between calls."""
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cached_findings(
    session: Session,
    scanner: TextScanner,
    rules: DomainRules,
    records: Iterable[dict[str, Any]],
    stats: Counter,
) -> Iterator[tuple[dict[str, Any], list[Finding]]]:
    """Yield each record with its findings, scanning only texts not seen under these rules.

    The cache is keyed by the SHA-256 of each text field (and the rules hash), a finer key than
    the record: a refresh that changes only a record's metadata or its completion rescans
    nothing, or only the completion. It holds offsets and types, never text.
    """
    iterator = iter(records)
    while True:
        block = list(itertools.islice(iterator, CACHE_BATCH))
        if not block:
            return
        fields = [
            (index, field, rec[field], text_hash(rec[field]))
            for index, rec in enumerate(block)
            for field in TEXT_FIELDS
            if isinstance(rec.get(field), str)
        ]
        hashes = {digest for *_, digest in fields}
        known = {
            entry.text_hash: entry.findings
            for entry in session.exec(
                select(ScanCacheEntry).where(
                    ScanCacheEntry.rules_hash == rules.hash,
                    ScanCacheEntry.text_hash.in_(hashes),
                )
            )
        }
        missing = {digest: text for _i, _f, text, digest in fields if digest not in known}
        scanned = scanner.scan_texts(list(missing.values()), rules)
        for (digest, _text), findings in zip(missing.items(), scanned, strict=True):
            spans = [[f.start, f.end, f.entity_type, round(f.score, 4)] for f in findings]
            known[digest] = spans
            session.add(ScanCacheEntry(text_hash=digest, rules_hash=rules.hash, findings=spans))
        found: list[list[Finding]] = [[] for _ in block]
        rescanned: set[int] = set()
        for index, field, _text, digest in fields:
            if digest in missing:
                rescanned.add(index)
            found[index].extend(Finding(index, field, *span) for span in known[digest])
        stats["from_cache"] += len(block) - len(rescanned)
        stats["texts_scanned"] += len(missing)
        yield from zip(block, found, strict=True)


def scan_version(
    session: Session,
    keyring: KeyRing,
    store: LocalBlobStore,
    scanner: TextScanner,
    version: DatasetVersion,
    rules: DomainRules,
    *,
    actor: Actor,
) -> ScanReceipt:
    """Scan a version under the rules, store its sanitized view encrypted, and write a receipt."""
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
    blocked = False
    data_key, wrapped = keyring.new_data_key(session, domain, sanitized_uid(uid))
    try:
        with store.stage(uid) as staged:
            writer = BlobWriter(staged, data_key, sanitized_uid(uid))
            raw = iter_version_records(session, keyring, store, version)
            for rec, findings in cached_findings(session, scanner, rules, raw, stats):
                stats["total"] += 1
                actions = set()
                for finding in findings:
                    counts[finding.entity_type][finding.field] += 1
                    actions.add(rules.rule_for(finding.entity_type).action)
                if "block" in actions:
                    blocked = True
                if "drop" in actions or "block" in actions:
                    stats["dropped"] += 1
                    continue
                clean = apply_findings(rec, findings) if findings else rec
                if findings:
                    stats["redacted"] += 1
                    if len(samples) < SAMPLES:
                        samples.append(
                            {f: clean[f][:SAMPLE_CHARS] for f in TEXT_FIELDS if f in clean}
                        )
                writer.add(canonical(clean))
            writer.close()
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
        session.commit()
        return receipt
    receipt.counts = {etype: dict(fields) for etype, fields in sorted(counts.items())}
    receipt.records_total = stats["total"]
    receipt.records_redacted = stats["redacted"]
    receipt.records_dropped = stats["dropped"]
    receipt.records_from_cache = stats["from_cache"]
    receipt.samples = samples
    receipt.sanitized_records = writer.content.size
    receipt.sanitized_hash = writer.content.root().hex()
    if blocked:
        receipt.verdict = Verdict.BLOCKED
    elif counts:
        receipt.verdict = Verdict.REDACTED
    else:
        receipt.verdict = Verdict.PASS
    key = f"{domain.name}/{uid}.sanitized.blob"
    receipt.sanitized_blob_key = key
    receipt.sanitized_wrapped_key = wrapped
    session.add(receipt)
    session.flush()
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
        },
    )
    try:
        session.commit()
    except BaseException:
        session.rollback()
        store.discard(uid)
        raise
    store.publish(uid, key)
    return receipt


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


def iter_sanitized(
    session: Session, keyring: KeyRing, store: LocalBlobStore, receipt: ScanReceipt
) -> Iterator[dict[str, Any]]:
    """Yield the sanitized records of a receipt: the only view a worker ever gets."""
    domain = session.get(Domain, receipt.domain_id)
    uid = receipt.sanitized_blob_key.rsplit("/", 1)[1].removesuffix(".sanitized.blob")
    key = keyring.open_data_key(session, domain, sanitized_uid(uid), receipt.sanitized_wrapped_key)
    with store.open(receipt.sanitized_blob_key) as handle:
        yield from read_blob(handle, key, sanitized_uid(uid))


def receipt_read(receipt: ScanReceipt, version: DatasetVersion, current_hash: str) -> dict:
    """A receipt as the API and the CLI show it: counts and redacted samples, no keys."""
    return ReceiptRead(
        dataset_version=version.uid,
        current_rules=receipt.rules_hash == current_hash,
        **receipt.model_dump(
            exclude={"version_id", "domain_id", "sanitized_blob_key", "sanitized_wrapped_key"}
        ),
    ).model_dump(mode="json")
