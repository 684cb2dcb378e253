"""Verify the stored log, and export entries as CSV, JSONL or an offline-verifiable bundle."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, col, select

from audit import merkle
from audit.bundle import VerificationError, bundle_writer
from audit.log import ENTRY_FIELDS
from governance import crypto
from governance.audit.models import AuditCheckpoint, AuditEntry
from governance.audit.pruning import PruneLedger
from governance.audit.service import (
    AuditLog,
    TreeCache,
    as_checkpoint,
    entry_leaf,
    iter_leaf_hashes,
    log_size,
    log_verifier_key,
    row_entry,
    sign_checkpoint,
)
from governance.audit.witnessing import WitnessClient, Witnessed, check_witnesses
from governance.authz.policy import SYSTEM_DOMAIN, UNSCOPED_DOMAIN
from governance.domains.models import Domain

CSV_COLUMNS = (*ENTRY_FIELDS, "leaf_hash")


@dataclass(frozen=True)
class EntryFilter:
    """Which entries to read; every field optional, combined with AND."""

    from_time: dt.datetime | None = None
    to_time: dt.datetime | None = None
    principal: str | None = None
    domain: str | None = None
    model: str | None = None
    action: str | None = None
    decision: str | None = None
    domains_allowed: frozenset[str] | None = None  # None: no restriction

    def is_empty(self) -> bool:
        return all(
            getattr(self, name) is None
            for name in (
                "from_time",
                "to_time",
                "principal",
                "domain",
                "model",
                "action",
                "decision",
                "domains_allowed",
            )
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_time.isoformat() if self.from_time else None,
            "to": self.to_time.isoformat() if self.to_time else None,
            "principal": self.principal,
            "domain": self.domain,
            "model": self.model,
            "action": self.action,
            "decision": self.decision,
        }

    @classmethod
    def from_dict(
        cls, values: dict[str, Any], domains_allowed: frozenset[str] | None = None
    ) -> EntryFilter:
        """The filter `as_dict` described (a job's parameters carry it this way)."""
        times = {
            f"{key}_time": dt.datetime.fromisoformat(values[key]) if values.get(key) else None
            for key in ("from", "to")
        }
        rest = {k: v for k, v in values.items() if k not in ("from", "to")}
        return cls(**times, **rest, domains_allowed=domains_allowed)

    def apply(self, query):
        """Add this filter's conditions to a select over AuditEntry."""
        c = AuditEntry
        if self.from_time is not None:
            query = query.where(c.time >= self.from_time)
        if self.to_time is not None:
            query = query.where(c.time < self.to_time)
        if self.principal is not None:
            query = query.where(c.principal == self.principal)
        if self.domain is not None:
            query = query.where(c.domain == self.domain)
        if self.model is not None:
            query = query.where(c.object == f"model/{self.model}")
        if self.action is not None:
            query = query.where(c.action == self.action)
        if self.decision is not None:
            query = query.where(c.decision == self.decision)
        if self.domains_allowed is not None and "*" not in self.domains_allowed:
            allowed = sorted(self.domains_allowed)
            # Entries outside any data domain belong to the `system` domain.
            condition = c.domain.in_(allowed)
            if SYSTEM_DOMAIN in self.domains_allowed:
                condition = sa.or_(condition, c.domain.is_(None))
            if UNSCOPED_DOMAIN in self.domains_allowed:
                # Unscoped: entries under a domain that is no data domain (an object that does
                # not exist, a decision asked about a domain nobody made).
                known = sa.select(Domain.name)  # type: ignore[call-overload]
                condition = sa.or_(
                    condition, sa.and_(c.domain != SYSTEM_DOMAIN, c.domain.not_in(known))
                )
            query = query.where(condition)
        return query


def iter_entries(
    session: Session,
    entry_filter: EntryFilter,
    upto: int | None = None,
    chunk: int = 5000,
    after: int = 0,
) -> Iterator[sa.Row]:
    """Yield matching entries after seq `after` by seq, a chunk at a time (constant memory).

    They are plain rows, read-only, with the columns as attributes: an export or a
    verification reads every entry of the log once, and building ORM objects for them cost
    more than hashing them (a third of an export's time, profiled at 50,000 entries)."""
    connection = session.connection()
    while True:
        query = entry_filter.apply(select(AuditEntry).where(AuditEntry.seq > after))
        if upto is not None:
            query = query.where(AuditEntry.seq <= upto)
        rows = connection.execute(query.order_by(AuditEntry.seq).limit(chunk)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


# --- verifying the database -----------------------------------------------------------------


@dataclass
class LogProgress:
    """How far a verification got: the tree over the entries checked so far, and the last
    checkpoint it matched. A later verification can go on from here instead of from entry 1."""

    compact: merkle.CompactRange = field(default_factory=merkle.CompactRange)
    previous_checkpoint: int = 0
    # Tombstones seen (seq: leaf hash) that no signed `audit.prune` entry accounts for yet.
    unaccounted: dict[int, str] = field(default_factory=dict)


@dataclass
class LogVerification:
    entries: int
    checkpoints: int
    verified_upto: int
    signed_at: str | None
    unanchored: int
    progress: LogProgress = field(default_factory=LogProgress, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "progress"}


def verify_log(
    session: Session,
    public_key,
    chunk: int = 5000,
    *,
    upto: int | None = None,
    resume: LogProgress | None = None,
    advance: Callable[[int], object] | None = None,
) -> LogVerification:
    """Recompute every entry's hash and the tree, and check every checkpoint against it.

    With `upto`, stop after that entry (the log may grow meanwhile). With `resume`, trust the
    entries a previous verification covered and check only what follows them. `advance(n)`
    is told of every `chunk` entries checked (a progress bar).
    """
    progress = copy.deepcopy(resume) if resume else LogProgress()
    compact = progress.compact
    statement = select(AuditCheckpoint).where(
        AuditCheckpoint.tree_size > progress.previous_checkpoint
    )
    if upto is not None:
        statement = statement.where(AuditCheckpoint.tree_size <= upto)
    checkpoints = {
        c.tree_size: c for c in session.exec(statement.order_by(AuditCheckpoint.tree_size))
    }
    for row in checkpoints.values():
        if not as_checkpoint(row).verify(public_key):
            raise VerificationError(f"checkpoint at tree size {row.tree_size} has a bad signature")
    previous_checkpoint = progress.previous_checkpoint
    ledger = PruneLedger(public_key, progress.unaccounted)
    for row in iter_entries(session, EntryFilter(), upto=upto, chunk=chunk, after=compact.size):
        expected = compact.size + 1
        if row.seq != expected:
            raise VerificationError(
                f"audit entry {expected} is missing (found {row.seq} next)", seq=expected
            )
        ledger.see(row)
        # A pruned entry's stored leaf hash is still checked by the tree.
        compact.append(entry_leaf(row))
        if advance is not None and compact.size % chunk == 0:
            advance(chunk)
        checkpoint = checkpoints.get(compact.size)
        if checkpoint is not None:
            if compact.root().hex() != checkpoint.root:
                raise VerificationError(
                    f"checkpoint at tree size {compact.size} does not match the log: one of "
                    f"entries {previous_checkpoint + 1}..{compact.size} was altered or reordered",
                    seq=previous_checkpoint + 1,
                )
            previous_checkpoint = compact.size
    size = log_size(session) if upto is None else upto
    if compact.size != size:
        raise VerificationError(
            f"the log head says {size} entries but {compact.size} are stored", seq=compact.size + 1
        )
    beyond = [s for s in checkpoints if s > size]
    if beyond:
        raise VerificationError(f"checkpoint at tree size {beyond[0]} lies beyond the log")
    if upto is None:  # at the head, every pruning that happened has its record in view
        ledger.check()
    progress.unaccounted = ledger.pending()
    progress.previous_checkpoint = previous_checkpoint
    last = session.exec(
        select(AuditCheckpoint).where(AuditCheckpoint.tree_size == previous_checkpoint)
    ).first()
    total = session.exec(select(sa.func.count()).select_from(AuditCheckpoint)).one()
    return LogVerification(
        entries=compact.size,
        checkpoints=total if upto is None else len(checkpoints),
        verified_upto=previous_checkpoint,
        signed_at=last.timestamp if last else None,
        unanchored=compact.size - previous_checkpoint,
        progress=progress,
    )


def verify_against_witnesses(
    session: Session,
    key: Ed25519PrivateKey,
    tree: TreeCache,
    *,
    origin: str | None = None,
    witnesses: Sequence[WitnessClient] = (),
    advance: Callable[[int], object] | None = None,
) -> tuple[LogVerification, list[Witnessed]]:
    """Verify the stored log, then compare it with what every witness last cosigned."""
    result = verify_log(session, key.public_key(), advance=advance)
    log_key = log_verifier_key(key, origin)
    seen = check_witnesses(
        witnesses,
        log_key.name,
        log_key,
        result.entries,
        lambda size: tree.root_at(session.connection(), size),
    )
    return result, seen


# --- exports --------------------------------------------------------------------------------


def entry_row_dict(row: AuditEntry) -> dict[str, Any]:
    return {**row_entry(row), "leaf_hash": row.leaf_hash}


def iter_jsonl(session: Session, entry_filter: EntryFilter) -> Iterator[str]:
    """Yield matching entries as JSON lines."""
    for row in iter_entries(session, entry_filter):
        yield json.dumps(entry_row_dict(row), sort_keys=True) + "\n"


def iter_csv(session: Session, entry_filter: EntryFilter) -> Iterator[str]:
    """Yield matching entries as CSV lines, after a header line."""
    line = io.StringIO()
    writer = csv.writer(line)

    def render(values) -> str:
        line.seek(0)
        line.truncate()
        writer.writerow(values)
        return line.getvalue()

    yield render(CSV_COLUMNS)
    for row in iter_entries(session, entry_filter):
        data = entry_row_dict(row)
        data["details"] = json.dumps(data["details"], sort_keys=True)
        yield render([data[c] if data[c] is not None else "" for c in CSV_COLUMNS])


def write_lines(lines: Iterator[str], out: IO[str]) -> int:
    """Write lines to a file; return how many entries they held (a CSV header excluded)."""
    count = 0
    for line in lines:
        out.write(line)
        count += 1
    return count


def write_jsonl(session: Session, entry_filter: EntryFilter, out: IO[str]) -> int:
    """Write matching entries as JSON lines; return how many."""
    return write_lines(iter_jsonl(session, entry_filter), out)


def write_csv(session: Session, entry_filter: EntryFilter, out: IO[str]) -> int:
    """Write matching entries as CSV with a header row; return how many."""
    return write_lines(iter_csv(session, entry_filter), out) - 1


def write_log_bundle(
    session: Session, entry_filter: EntryFilter, out: Path, log: AuditLog
) -> dict[str, Any]:
    """`write_bundle` with the log's own signing key, tree cache, origin and witnesses."""
    return write_bundle(
        session,
        entry_filter,
        out,
        log.signing_key,
        log.tree,
        origin=log.origin,
        witnesses=log.witnesses,
    )


def write_bundle(
    session: Session,
    entry_filter: EntryFilter,
    out: Path,
    key: Ed25519PrivateKey,
    tree: TreeCache | None = None,
    *,
    origin: str | None = None,
    witnesses: Sequence[WitnessClient] = (),
) -> dict[str, Any]:
    """Write an offline-verifiable bundle of the matching entries; return its manifest.

    The log is verified first, against its own checkpoints and what every witness cosigned:
    an export never signs a fresh checkpoint over a log that was tampered with.
    """
    tree = tree or TreeCache()
    verified, _ = verify_against_witnesses(session, key, tree, origin=origin, witnesses=witnesses)
    anchor = sign_checkpoint(
        session, key, tree, origin=origin, witnesses=witnesses, verified=verified.entries
    )
    if anchor is None:
        raise VerificationError("the audit log is empty; there is nothing to export")
    size = anchor.tree_size
    log_key = log_verifier_key(key, origin)
    witnessed = check_witnesses(
        witnesses, log_key.name, log_key, size, lambda n: tree.root_at(session.connection(), n)
    )
    pruned = session.exec(
        select(sa.func.count())
        .select_from(AuditEntry)
        .where(col(AuditEntry.pruned_at).is_not(None), AuditEntry.seq <= size)
    ).one()
    # Pruned entries have no content to list: the bundle then carries every leaf hash, which
    # the checkpoints vouch for, and lists the entries that still have content.
    complete = entry_filter.is_empty() and not pruned
    checkpoints = list(
        session.exec(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.tree_size <= size)
            .order_by(AuditCheckpoint.tree_size)
        )
    )
    connection = session.connection()
    with bundle_writer(out) as writer:
        writer.write_public_key(crypto.public_key_pem(key.public_key()))
        for row in checkpoints:
            writer.add_checkpoint(as_checkpoint(row))
        first = last = None
        for row in iter_entries(session, entry_filter, upto=size):
            if row.pruned_at is not None:
                continue
            writer.add_entry(row_entry(row))
            first = first or row.seq
            last = row.seq
        if not complete:
            for leaf in iter_leaf_hashes(connection, size):
                writer.add_leaf(leaf)
        # Every included checkpoint is checked by recomputing its root; the consistency proofs
        # let a reader who trusts an earlier checkpoint check the anchor without the leaves.
        earlier = {c.tree_size: c for c in (checkpoints[0], checkpoints[-2:][0])}
        for old in earlier.values():
            if old.tree_size == size:
                continue
            new = anchor
            ranges = merkle.consistency_proof_ranges(old.tree_size, new.tree_size)
            proof = merkle.subtree_roots(ranges, iter_leaf_hashes(connection, new.tree_size))
            writer.add_proof(
                {
                    "type": "consistency",
                    "old_size": old.tree_size,
                    "new_size": new.tree_size,
                    "proof": [h.hex() for h in proof],
                }
            )
        for seq in sorted({s for s in (first, last) if s is not None}):
            ranges = merkle.inclusion_proof_ranges(seq - 1, size)
            proof = merkle.subtree_roots(ranges, iter_leaf_hashes(connection, size))
            writer.add_proof(
                {
                    "type": "inclusion",
                    "seq": seq,
                    "tree_size": size,
                    "proof": [h.hex() for h in proof],
                }
            )
        for state in witnessed:
            writer.add_witnessed(state.as_dict())
        manifest = {
            "created_at": anchor.timestamp,
            "tree_size": size,
            "complete": complete,
            "filters": entry_filter.as_dict(),
            "pruned_entries": pruned,
            "key_id": anchor.key_id,
            "origin": log_key.name,
            "log_key": log_key.encode(),
            "witnessed_by": [state.witness for state in witnessed],
        }
        writer.finish(manifest)
    return {**manifest, "entries": writer.entry_count}
