"""Scan a dataset version: receipt, encrypted sanitized view, incremental cache, the gate.

Workers only ever receive the sanitized view. A version may train only when its newest
receipt under the rules in force says pass or redacted; a scanner failure yields an `error`
receipt and the gate stays shut (fail closed).
"""

from __future__ import annotations

import functools
import itertools
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from sqlmodel import Session, select

from audit import merkle
from audit.log import canonical
from governance.audit.service import Actor, record
from governance.datasets.models import DatasetVersion, VersionStatus
from governance.datasets.records import TEXT_FIELDS, BlobWriter, read_blob
from governance.datasets.service import iter_version_records
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict
from governance.pii.models import ScanCacheEntry, ScanReceipt, Verdict
from governance.pii.rules import DomainRules
from governance.pii.scanner import Finding, Scanner
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


def record_hash(record_: dict[str, Any]) -> str:
    return merkle.leaf_hash(canonical(record_)).hex()


def cached_findings(
    session: Session,
    scanner: Scanner,
    rules: DomainRules,
    records: Iterable[dict[str, Any]],
    stats: Counter,
) -> Iterator[tuple[dict[str, Any], list[Finding]]]:
    """Yield each record with its findings, scanning only records not seen under these rules."""
    iterator = iter(records)
    while True:
        block = list(itertools.islice(iterator, CACHE_BATCH))
        if not block:
            return
        hashes = [record_hash(r) for r in block]
        known = {
            entry.record_hash: entry.findings
            for entry in session.exec(
                select(ScanCacheEntry).where(
                    ScanCacheEntry.rules_hash == rules.hash,
                    ScanCacheEntry.record_hash.in_(set(hashes)),
                )
            )
        }
        missing = [i for i, h in enumerate(hashes) if h not in known]
        fresh: dict[int, list[Finding]] = {}
        for offset, findings in scanner.scan_records([block[i] for i in missing], rules):
            fresh[missing[offset]] = findings
        for index in missing:
            # A record repeated within the block is stored in the cache once.
            if hashes[index] not in known:
                spans = [
                    [f.field, f.start, f.end, f.entity_type, round(f.score, 4)]
                    for f in fresh[index]
                ]
                known[hashes[index]] = spans
                session.add(
                    ScanCacheEntry(record_hash=hashes[index], rules_hash=rules.hash, findings=spans)
                )
        stats["from_cache"] += len(block) - len(missing)
        for index, rec in enumerate(block):
            findings = fresh.get(index)
            if findings is None:
                findings = [Finding(index, *span) for span in known[hashes[index]]]
            yield rec, findings


def scan_version(
    session: Session,
    keyring: KeyRing,
    store: LocalBlobStore,
    scanner: Scanner,
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
