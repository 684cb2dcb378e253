"""A scan of a dataset version: a map over its shards, then a reduce into one receipt.

A version is stored in shards cut at upload (`dataset_shards`). Scanning one shard
(`scan_shard`) reads only that shard, writes only that shard's piece of the sanitized view,
and returns an `Outcome`: counts in the clear, and the text a receipt keeps (redacted samples,
held records' previews, the labelling sample) sealed under the scan's view key. `reduce`
folds the outcomes in shard order into the receipt. Nothing in an outcome depends on which
process scanned the shard or when, so the same version scanned by one process or by sixteen
workers gives the same receipt, byte for byte in its canonical body (`receipt_body`):

- every random draw comes from the scan's seed, an HMAC of the version's content hash, the
  rules and the scanner under the domain's content key: the canaries planted in a shard, and
  the samples, which are the records with the lowest keyed draws (bottom-k: a sample of a
  union is the sample of the shards' samples);
- the cache of findings only saves work: what it gives is what a scan would find.

The job system runs the map (`governance.workers.handlers`): one `scan-shard` job per shard,
taken by any runner or Celery worker, each under its own lease; the `scan` job waits for them
(scanning shards itself meanwhile) and reduces. `scan_version` runs the same map and reduce
in one process.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from audit import merkle
from audit.log import canonical
from governance.audit.service import Actor, record
from governance.crypto import open_sealed, seal
from governance.datasets.models import DatasetShard, DatasetVersion, VersionStatus
from governance.datasets.records import TEXT_FIELDS, BlobWriter
from governance.datasets.service import iter_shard_records, version_key, version_shards
from governance.db import insert_or_ignore, on_commit, on_rollback, upsert, utcnow
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict
from governance.pii import canaries
from governance.pii.cache import content_key, keyed_hash, remember
from governance.pii.estimate import estimate, placeholders
from governance.pii.models import (
    QuarantineDecision,
    QuarantinedRecord,
    ScanCacheEntry,
    ScanReceipt,
    ScanRun,
    ScanRunState,
    ScanShardResult,
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

# What a receipt's digest covers: what the scan found, not who ran it, when, or how much the
# cache saved. Sealed samples are covered by what they were drawn from (positions, seed).
BODY_FIELDS = (
    "rules_hash",
    "content_hash",
    "scanner",
    "seed",
    "verdict",
    "error",
    "reasons",
    "counts",
    "records_total",
    "records_redacted",
    "records_dropped",
    "records_quarantined",
    "records_kept",
    "canaries",
    "canary_recall",
    "samples",
    "label_sample",
    "sanitized_records",
    "sanitized_shards",
    "sanitized_hash",
)


def sanitized_uid(receipt_uid: str) -> str:
    return f"{receipt_uid}.sanitized"


def unflagged_aad(receipt_uid: str) -> bytes:
    return f"governance/unflagged-sample/{receipt_uid}".encode()


def label_aad(receipt_uid: str) -> bytes:
    return f"governance/label-sample/{receipt_uid}".encode()


def outcome_aad(run_uid: str, ordinal: int) -> bytes:
    return f"governance/scan-shard/{run_uid}/{ordinal}".encode()


def view_prefix(domain: Domain, run_uid: str) -> str:
    """Where a sharded sanitized view lives: `<prefix>.<ordinal>.blob` per shard."""
    return f"{domain.name}/{sanitized_uid(run_uid)}"


def view_shard_key(prefix: str, ordinal: int) -> str:
    """Where shard `ordinal` of a sharded view under `prefix` (`view_prefix`) is stored."""
    return f"{prefix}.{ordinal}.blob"


def view_shard_uid(run_uid: str, ordinal: int) -> str:
    """The name shard `ordinal` of a sanitized view is sealed and staged under."""
    return f"{sanitized_uid(run_uid)}.{ordinal}"


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
                    col(ScanCacheEntry.text_hash).in_(set(hashes)),
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
    scanner: TextScanner, rules: DomainRules, sample: list[str], rng: random.Random
) -> dict[str, list[int]]:
    """Plant a canary of every form in the sampled texts, scan, and count what was found.

    The planted copies exist only here; nothing of them is stored or cached.
    """
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


def shown_sample(clean: dict[str, Any]) -> dict[str, str]:
    """A record's text fields as a reviewer sees them: cut short, digits as #."""
    return {f: mask_residuals(clean[f][:SAMPLE_CHARS]) for f in TEXT_FIELDS if f in clean}


class Draws:
    """Keyed random draws for a scan: the same seed, purpose and record give the same number
    in every process, and nobody without the domain's key can predict them."""

    def __init__(self, seed: str) -> None:
        self.key = bytes.fromhex(seed)

    def __call__(self, purpose: str, index: int) -> int:
        digest = hashlib.blake2b(f"{purpose}/{index}".encode(), key=self.key, digest_size=8)
        return int.from_bytes(digest.digest(), "big")


class BottomK:
    """The k items with the lowest draws: a uniform sample of what was offered, and the sample
    of a union is the bottom k of the parts' samples."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.heap: list[tuple[int, int, Any]] = []  # (-draw, -index, item): a max-heap

    def offer(self, draw: int, index: int, item: Callable[[], Any] | Any) -> None:
        if self.k <= 0:
            return
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, (-draw, -index, item() if callable(item) else item))
        elif (-draw, -index) > self.heap[0][:2]:
            heapq.heapreplace(self.heap, (-draw, -index, item() if callable(item) else item))

    def items(self) -> list[tuple[int, int, Any]]:
        """(draw, index, item), lowest draw first."""
        return sorted((-d, -i, item) for d, i, item in self.heap)


@dataclass
class Outcome:
    """What scanning one shard found."""

    ordinal: int
    records: int
    sanitized_records: int
    sanitized_root: str
    counts: dict[str, dict[str, int]]
    stats: dict[str, int]
    blocked: bool
    canaries: dict[str, list[int]]
    # Text: sealed under the view key when stored.
    samples: list[dict[str, str]] = field(default_factory=list)
    unflagged: list[list[Any]] = field(default_factory=list)  # [draw, index, shown]
    label: list[list[Any]] = field(default_factory=list)  # [draw, local position, redacted, text]
    quarantine: list[list[Any]] = field(default_factory=list)  # [index, residuals, preview, held]
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "stats": self.stats,
            "blocked": self.blocked,
            "canaries": self.canaries,
        }

    def text(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "unflagged": self.unflagged,
            "label": self.label,
            "quarantine": self.quarantine,
        }


# --- a run ------------------------------------------------------------------------------------


def new_run(
    session: Session,
    keyring: KeyRing,
    scanner: TextScanner,
    version: DatasetVersion,
    rules: DomainRules,
    *,
    actor: Actor,
    job_uid: str | None = None,
) -> tuple[ScanRun, bytes]:
    """A scan run (not yet added to the session) and its view's data key."""
    if version.status != VersionStatus.READY:
        raise Conflict(f"dataset version {version.uid} was deleted", details={"uid": version.uid})
    domain = session.get(Domain, version.domain_id)
    uid = uuid.uuid4().hex
    seed = keyed_hash(
        content_key(keyring, session, domain),
        f"scan-seed/{version.content_hash}/{cache_key(scanner, rules)}",
    )
    view_key, wrapped = keyring.new_data_key(session, domain, sanitized_uid(uid))
    run = ScanRun(
        uid=uid,
        version_id=version.id,
        domain_id=domain.id,
        rules_hash=rules.hash,
        scanner=dict(scanner.versions),
        seed=seed,
        shards=version.shards,
        wrapped_key=wrapped,
        job_uid=job_uid,
        created_by=actor.principal,
    )
    return run, view_key


def run_view_key(session: Session, keyring: KeyRing, run: ScanRun) -> bytes:
    if run.wrapped_key is None:
        raise Conflict("the scan's dataset version was deleted", code="erased")
    domain = session.get(Domain, run.domain_id)
    return keyring.open_data_key(session, domain, sanitized_uid(run.uid), run.wrapped_key)


def scan_shard(
    session: Session,
    keyring: KeyRing,
    store: BlobStore,
    scanner: TextScanner,
    run: ScanRun,
    version: DatasetVersion,
    shard: DatasetShard,
    rules: DomainRules,
    view_key: bytes,
    *,
    progress: Callable[[int], Any] | None = None,
) -> Outcome:
    """Scan one shard under the run's rules; stage its piece of the sanitized view.

    The piece is published when the caller commits the outcome (`store_outcome`), and
    discarded if it does not. Writes nothing to the session (the findings cache commits on
    a connection of its own)."""
    started = time.monotonic()
    if dict(scanner.versions) != run.scanner or rules.hash != run.rules_hash:
        raise Conflict(
            "this worker's scanner or rules differ from those the scan started with",
            details={"scanner": dict(scanner.versions), "rules_hash": rules.hash},
            code="scanner_mismatch",
        )
    domain = session.get(Domain, run.domain_id)
    hash_key = content_key(keyring, session, domain)
    draw = Draws(run.seed)
    # Canaries are synthetic values drawn from the seed (reproducible, not secret).
    rng = random.Random(f"{run.seed}/{shard.ordinal}")  # noqa: S311
    first = shard.first_record
    decisions = {
        q.record_index: q.decision
        for q in session.exec(
            select(QuarantinedRecord).where(
                QuarantinedRecord.version_id == version.id,
                col(QuarantinedRecord.record_index) >= first,
                col(QuarantinedRecord.record_index) < first + shard.record_count,
            )
        )
    }
    names = getattr(scanner, "names", None)
    counts: dict[str, Counter] = defaultdict(Counter)
    stats: Counter = Counter()
    samples: list[dict[str, str]] = []
    seen_samples: set[str] = set()
    hosts, unflagged = BottomK(CANARY_HOSTS), BottomK(SAMPLES)
    to_label = BottomK(rules.label_sample or 0)
    quarantine: list[list[Any]] = []
    blocked = False
    staged = view_shard_uid(run.uid, shard.ordinal)
    with store.stage(staged) as out:
        writer = BlobWriter(out, view_key, staged)
        raw = iter_shard_records(store, version_key(session, keyring, version), version, shard)
        for offset, (rec, findings) in enumerate(
            cached_findings(session, scanner, rules, raw, stats, hash_key)
        ):
            index = first + offset
            stats["total"] += 1
            if progress is not None:
                progress(1)
            hosts.offer(draw("host", index), index, lambda rec=rec: record_text(rec)[0])
            for finding in findings:
                counts[finding.entity_type][finding.field] += 1
            result = sanitize(rec, findings, rules, names)
            blocked = blocked or result.blocked
            if result.dropped:
                stats["dropped"] += 1
                continue
            clean = result.clean
            if result.residuals:
                decision = decisions.get(index)
                preview = {k: mask_residuals(v) for k, v in clean.items()}
                quarantine.append([index, result.residuals, preview, result.held])
                if decision != QuarantineDecision.KEEP:
                    stats["quarantined" if decision is None else "dropped"] += 1
                    continue
                stats["kept"] += 1
            if not findings and not result.residuals:
                # What the scanner passed untouched, for reviewers to judge what it missed.
                unflagged.offer(
                    draw("unflagged", index),
                    index,
                    lambda clean=clean: shown_sample(clean),
                )
            if findings:
                stats["redacted"] += 1
                if len(samples) < SAMPLES:
                    sample = {f: clean[f][:SAMPLE_CHARS] for f in TEXT_FIELDS if f in clean}
                    key = canonical(sample)
                    if key not in seen_samples:
                        seen_samples.add(key)
                        samples.append(sample)
            if rules.label_sample:
                position = writer.content.size
                to_label.offer(
                    draw("label", index),
                    index,
                    lambda clean=clean, position=position: [
                        position,
                        placeholders(clean),
                        {k: mask_residuals(v) for k, v in clean.items()},
                    ],
                )
            if rules.unit_key:
                # The customer, for DP training's unit of privacy: only a keyed hash.
                value = (rec.get("metadata") or {}).get(rules.unit_key)
                if value is not None and value != "":
                    clean = {**clean, "unit": keyed_hash(hash_key, f"unit:{value}")[:32]}
            writer.add(canonical(clean))
        writer.close()
        measured = measure_canaries(scanner, rules, [text for _d, _i, text in hosts.items()], rng)
    return Outcome(
        ordinal=shard.ordinal,
        records=stats["total"],
        sanitized_records=writer.content.size,
        sanitized_root=writer.content.root().hex(),
        counts={etype: dict(sorted(fields.items())) for etype, fields in sorted(counts.items())},
        stats={k: stats[k] for k in sorted(stats)},
        blocked=blocked,
        canaries=measured,
        samples=samples,
        unflagged=[[d, i, shown] for d, i, shown in unflagged.items()],
        label=[[d, *drawn] for d, _i, drawn in to_label.items()],
        quarantine=quarantine,
        seconds=round(time.monotonic() - started, 3),
    )


def store_outcome(
    session: Session,
    store: BlobStore,
    run: ScanRun,
    outcome: Outcome,
    view_key: bytes,
    *,
    worker: str | None = None,
) -> bool:
    """Keep a shard's outcome (once: a repeated attempt's is ignored) and publish its piece of
    the view when the caller commits. False if another attempt stored it first."""
    staged = view_shard_uid(run.uid, outcome.ordinal)
    table = ScanShardResult.__table__
    inserted = session.execute(
        insert_or_ignore(session, table, ["run_id", "ordinal"]).values(
            run_id=run.id,
            ordinal=outcome.ordinal,
            records=outcome.records,
            sanitized_records=outcome.sanitized_records,
            sanitized_root=outcome.sanitized_root,
            summary=outcome.summary(),
            sealed=seal(view_key, canonical(outcome.text()), outcome_aad(run.uid, outcome.ordinal)),
            worker=worker,
            seconds=outcome.seconds,
            created_at=utcnow(),
        )
    ).rowcount
    if not inserted:
        store.discard(staged)
        return False
    domain = session.get(Domain, run.domain_id)
    key = view_shard_key(view_prefix(domain, run.uid), outcome.ordinal)
    on_commit(session, lambda: store.publish(staged, key))
    on_rollback(session, lambda: store.discard(staged))
    return True


def stored_ordinals(session: Session, run: ScanRun) -> list[int]:
    """The shards of the run whose outcome is stored, in order."""
    column = ScanShardResult.__table__.c  # type: ignore[attr-defined]
    query = select(column.ordinal).where(column.run_id == run.id).order_by(column.ordinal)
    return list(session.execute(query).scalars())


def stored_outcomes(session: Session, run: ScanRun, view_key: bytes) -> Iterator[Outcome]:
    """The run's stored outcomes, in shard order, read one at a time: a reduce holds one
    shard's outcome (its held records' previews, its samples) in memory, not every shard's."""
    table = ScanShardResult.__table__  # type: ignore[attr-defined]
    for ordinal in stored_ordinals(session, run):
        row = session.execute(
            select(
                table.c.records, table.c.sanitized_records, table.c.sanitized_root,
                table.c.seconds, table.c.summary, table.c.sealed,
            ).where(table.c.run_id == run.id, table.c.ordinal == ordinal)
        ).one()  # fmt: skip
        text = json.loads(open_sealed(view_key, row.sealed, outcome_aad(run.uid, ordinal)))
        yield Outcome(
            ordinal=ordinal,
            records=row.records,
            sanitized_records=row.sanitized_records,
            sanitized_root=row.sanitized_root,
            seconds=row.seconds,
            **row.summary,
            **text,
        )


def view_root(shards: list[tuple[int, str]]) -> str:
    """The sanitized view's hash: the Merkle root (RFC 6962) over its shards, each leaf the
    canonical {records, root} of one shard (given as (records, root) pairs in shard order),
    whose root is that of its records. A record's place in the view is proven by its shard's
    path and the shard's record path."""
    return merkle.root(
        [merkle.leaf_hash(canonical({"records": n, "root": root})) for n, root in shards]
    ).hex()


def receipt_body(receipt: ScanReceipt, version_uid: str) -> dict[str, Any]:
    """What a receipt's digest covers (`BODY_FIELDS`), as canonical JSON would hold it."""
    body = {"dataset_version": version_uid}
    for name in BODY_FIELDS:
        body[name] = getattr(receipt, name)
    return json.loads(canonical(body))


def reduce(
    session: Session,
    run: ScanRun,
    version: DatasetVersion,
    rules: DomainRules,
    view_key: bytes,
    *,
    actor: Actor,
) -> ScanReceipt:
    """Fold the run's stored outcomes, in shard order, into the scan's receipt (added to the
    session with its quarantine rows and audit entry); the run is done.

    Outcomes are read one shard at a time, twice: once to fold what the receipt holds (counts,
    samples, bottom-k draws: bounded whatever the version's size), and once, after the receipt
    has its id, to write each shard's held records as quarantine rows. Memory is that of one
    shard's outcome, not of every record held for review."""
    if stored_ordinals(session, run) != list(range(run.shards)):
        raise Conflict("a scan's receipt needs every shard's outcome", code="scan_incomplete")
    domain = session.get(Domain, run.domain_id)
    counts: dict[str, Counter] = defaultdict(Counter)
    stats: Counter = Counter()
    found_canaries: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    samples: list[dict[str, str]] = []
    seen: set[str] = set()
    unflagged, to_label = BottomK(SAMPLES), BottomK(rules.label_sample or 0)
    shards: list[tuple[int, str]] = []
    blocked = False
    offset = 0
    for outcome in stored_outcomes(session, run, view_key):
        for etype, fields in outcome.counts.items():
            counts[etype].update(fields)
        stats.update(outcome.stats)
        for etype, (found, planted) in outcome.canaries.items():
            found_canaries[etype][0] += found
            found_canaries[etype][1] += planted
        for sample in outcome.samples:
            key = canonical(sample)
            if len(samples) < SAMPLES and key not in seen:
                seen.add(key)
                samples.append(sample)
        for drawn, index, shown in outcome.unflagged:
            unflagged.offer(drawn, index, shown)
        for drawn, position, redacted, text in outcome.label:
            to_label.offer(drawn, offset + position, [offset + position, redacted, text])
        shards.append((outcome.sanitized_records, outcome.sanitized_root))
        blocked = blocked or outcome.blocked
        offset += outcome.sanitized_records
    canary_counts = dict(sorted(found_canaries.items()))
    found = sum(f for f, _ in canary_counts.values())
    planted = sum(p for _, p in canary_counts.values())
    labelled = sorted(item for _d, _i, item in to_label.items())
    receipt = ScanReceipt(
        version_id=version.id,
        domain_id=domain.id,
        rules_hash=run.rules_hash,
        content_hash=version.content_hash,
        scanner=dict(run.scanner),
        seed=run.seed,
        counts={etype: dict(sorted(f.items())) for etype, f in sorted(counts.items())},
        records_total=stats["total"],
        records_redacted=stats["redacted"],
        records_dropped=stats["dropped"],
        records_from_cache=stats["from_cache"],
        records_quarantined=stats["quarantined"],
        records_kept=stats["kept"],
        samples=samples,
        canaries=canary_counts,
        canary_recall=round(found / planted, 4) if planted else None,
        sanitized_records=offset,
        sanitized_shards=[n for n, _root in shards],
        sanitized_hash=view_root(shards),
        label_sample=[{"position": p, "redacted": r} for p, r, _text in labelled],
        recall_estimate=estimate([], len(labelled)) if labelled else None,
        sanitized_blob_key=view_prefix(domain, run.uid),
        sanitized_wrapped_key=run.wrapped_key,
        verdict=Verdict.ERROR,
        created_by=actor.principal,
    )
    unflagged_items = [shown for _d, _i, shown in unflagged.items()]
    receipt.unflagged_sealed = seal(view_key, canonical(unflagged_items), unflagged_aad(run.uid))
    if labelled:
        texts = [text for _p, _r, text in labelled]
        receipt.label_sealed = seal(view_key, canonical(texts), label_aad(run.uid))
    reasons = []
    gate = rules.gate
    if receipt.canary_recall is not None and receipt.canary_recall < gate["canary_recall"]:
        reasons.append(
            {
                "code": "canary_recall",
                "message": f"the scan found {found} of {planted} planted canaries, below the "
                f"domain's {gate['canary_recall']}",
            }
        )
    share = stats["quarantined"] / stats["total"] if stats["total"] else 0.0
    if share > gate["quarantine_share"]:
        reasons.append(
            {
                "code": "quarantine_share",
                "message": f"{stats['quarantined']} of {stats['total']} records await a "
                f"steward's review, above the domain's {gate['quarantine_share']:.0%}",
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
    receipt.digest = hashlib.sha256(canonical(receipt_body(receipt, version.uid))).hexdigest()
    session.add(receipt)
    session.flush()
    for outcome in stored_outcomes(session, run, view_key):
        record_quarantine(session, version, receipt, outcome.quarantine)
    run.state, run.receipt_id = ScanRunState.DONE, receipt.id
    session.add(run)
    record(
        session,
        actor,
        "scan.complete",
        f"dataset-version/{version.uid}",
        domain.name,
        details={
            "receipt": receipt.id,
            "verdict": receipt.verdict,
            "rules_hash": run.rules_hash,
            "records": receipt.records_total,
            "shards": run.shards,
            "from_cache": receipt.records_from_cache,
            "quarantined": receipt.records_quarantined,
            "canary_recall": receipt.canary_recall,
            "digest": receipt.digest,
        },
    )
    return receipt


QUARANTINE_BATCH = 2000


def record_quarantine(session, version, receipt, held) -> None:
    """Keep one row per held-back record of the version, refreshed by every scan: batched
    upserts keyed by (version, record), so a steward's decision outlives rescans. Plain rows,
    not ORM objects: building one each cost about 0.3 ms and held about 3.5 KB until the
    flush, which made the reduce of 10^6 records take 5 minutes and 3.5 GiB (BENCHMARKS.md)."""
    statement = upsert(
        session,
        QuarantinedRecord.__table__,  # type: ignore[attr-defined]
        ["version_id", "record_index"],
        ["receipt_id", "residuals", "preview", "spans"],
    )
    now = utcnow()
    batch: list[dict[str, Any]] = []
    for index, found, preview, spans in held:
        batch.append(
            {
                "version_id": version.id,
                "record_index": index,
                "receipt_id": receipt.id,
                "residuals": found,
                "preview": preview,
                "spans": spans,
                "created_at": now,
            }
        )
        if len(batch) == QUARANTINE_BATCH:
            session.execute(statement, batch)
            batch = []
    if batch:
        session.execute(statement, batch)


def error_receipt(
    session: Session,
    version: DatasetVersion,
    rules_hash: str,
    scanner: dict[str, Any],
    error: str,
    *,
    actor: Actor,
    run: ScanRun | None = None,
) -> ScanReceipt:
    """Fail closed: a receipt that says the scan failed (and why, naming the shard), so the
    version may not train until a scan passes."""
    domain = session.get(Domain, version.domain_id)
    receipt = ScanReceipt(
        version_id=version.id,
        domain_id=domain.id,
        rules_hash=rules_hash,
        content_hash=version.content_hash,
        scanner=dict(scanner),
        seed=run.seed if run is not None else None,
        verdict=Verdict.ERROR,
        error=error[:500],
        created_by=actor.principal,
    )
    session.add(receipt)
    session.flush()
    if run is not None:
        run.state, run.receipt_id = ScanRunState.FAILED, receipt.id
        session.add(run)
    record(
        session,
        actor,
        "scan.error",
        f"dataset-version/{version.uid}",
        domain.name,
        decision="failed",
        details={"rules_hash": rules_hash, "receipt": receipt.id, "error": error[:200]},
    )
    return receipt


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
    """Scan a version in this process: the same map over shards and reduce as the job system
    runs across workers, so the receipt is the same.

    `progress(n)` is told of every n records scanned (for a progress bar). The caller commits
    the receipt; the sanitized view is published then (and discarded should it roll back). A
    failure of the scanner or the storage gives an `error` receipt (fail closed)."""
    run, view_key = new_run(session, keyring, scanner, version, rules, actor=actor)
    # Outcomes are kept in memory and stored once every shard is scanned: storing one writes,
    # and on SQLite the session's first write holds the database's one write lock until the
    # caller commits (cache.remember). The job path stores each shard's as it finishes.
    outcomes: list[Outcome] = []
    shard = None
    try:
        for shard in version_shards(session, version):
            outcomes.append(
                scan_shard(
                    session, keyring, store, scanner, run, version, shard, rules, view_key,
                    progress=progress,
                )
            )  # fmt: skip
    except Exception as exc:  # Fail closed: any scanner or storage failure is an error receipt.
        for done in outcomes:
            store.discard(view_shard_uid(run.uid, done.ordinal))
        session.rollback()
        log.exception("scan of dataset version %s failed", version.uid)
        where = f"shard {shard.ordinal}: " if shard is not None and version.shards > 1 else ""
        return error_receipt(
            session, version, rules.hash, scanner.versions,
            f"{where}{type(exc).__name__}: scan failed", actor=actor,
        )  # fmt: skip
    session.add(run)
    session.flush()
    for outcome in outcomes:
        store_outcome(session, store, run, outcome, view_key)
    del outcomes
    return reduce(session, run, version, rules, view_key, actor=actor)
