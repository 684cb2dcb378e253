"""Pruning audit entries without breaking what proves the log (see governance.domains.
retention for the policy): a pruned entry keeps its leaf hash and loses its content, and an
`audit.prune` entry in the system domain accounts for every tombstone, signed by the log's key
over the pruned entries' leaf hashes (`audit.log.prune_statement`), so that blanking an entry
takes the key, not only write access to the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlmodel import Session, col, select

from audit import merkle
from audit.bundle import VerificationError, accounted_prune
from audit.log import PRUNE_ACTION, canonical, sign_prune
from governance.audit.models import AuditCheckpoint, AuditEntry
from governance.audit.service import (
    TOMBSTONE,
    Actor,
    format_time,
    is_tombstone,
    record,
    row_entry,
)
from governance.db import utcnow

BATCH = 5000


@dataclass
class Pruned:
    domain: str
    kind: str
    before: dt.datetime
    count: int = 0
    ranges: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "domain": self.domain,
            "kind": self.kind,
            "before": format_time(self.before),
            "count": self.count,
        }
        if self.kind == "audit_entries":
            out["ranges"] = self.ranges
        return out


def ranges_of(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted numbers as closed [first, last] runs."""
    runs: list[list[int]] = []
    for seq in sorted(seqs):
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return runs


def seqs_of(runs: Iterable[Iterable[int]]) -> Iterator[int]:
    for first, last in runs:
        yield from range(int(first), int(last) + 1)


def last_checkpoint(session: Session) -> int:
    return session.exec(select(sa.func.max(AuditCheckpoint.tree_size))).one() or 0


def prune_audit_entries(
    session: Session,
    domain: str,
    before: dt.datetime,
    actor: Actor,
    key: Ed25519PrivateKey,
    batch: int = BATCH,
) -> Pruned:
    """Tombstone the domain's anchored entries older than `before`, in batches, each batch
    in one transaction with its `audit.prune` record, signed by the log's `key`."""
    done = Pruned(domain, "audit_entries", before)
    anchored = last_checkpoint(session)
    while True:
        rows = session.exec(
            select(AuditEntry)
            .where(AuditEntry.domain == domain, AuditEntry.time < before)
            .where(col(AuditEntry.pruned_at).is_(None), AuditEntry.seq <= anchored)
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            return done
        for row in rows:
            if merkle.leaf_hash(canonical(row_entry(row))).hex() != row.leaf_hash:
                raise VerificationError(
                    f"audit entry {row.seq} was altered; retention will not prune over it",
                    seq=row.seq,
                )
        now = utcnow()
        seqs = [row.seq for row in rows]
        table = AuditEntry.__table__
        session.execute(
            sa.update(table)
            .where(table.c.seq.in_(seqs), table.c.pruned_at.is_(None))
            .values(**TOMBSTONE, pruned_at=now)
        )
        part = Pruned(domain, "audit_entries", before, len(seqs), ranges_of(seqs))
        leaves = [bytes.fromhex(row.leaf_hash) for row in rows]
        record(
            session,
            actor,
            PRUNE_ACTION,
            "audit",
            None,
            details={
                **part.as_dict(),
                "checkpoint": anchored,
                "signature": sign_prune(key, part.ranges, leaves, anchored),
            },
        )
        session.commit()
        session.expunge_all()
        done.count += part.count
        done.ranges += part.ranges


class PruneLedger:
    """What verification needs to tell a pruned entry from an erased one: the tombstones seen
    (with their leaf hashes), minus those a signed `audit.prune` entry accounts for."""

    def __init__(
        self, public_key: Ed25519PublicKey, unaccounted: dict[int, str] | None = None
    ) -> None:
        self.public_key = public_key
        self.unaccounted = {seq: bytes.fromhex(h) for seq, h in (unaccounted or {}).items()}

    def see(self, row: Any) -> None:
        if row.pruned_at is not None:
            if not is_tombstone(row):
                raise VerificationError(
                    f"audit entry {row.seq} is marked pruned but keeps content", seq=row.seq
                )
            self.unaccounted[row.seq] = bytes.fromhex(row.leaf_hash)
        elif row.action == PRUNE_ACTION and row.domain is None:
            seqs = accounted_prune(row.seq, row.details, self.unaccounted, self.public_key)
            for seq in seqs:
                self.unaccounted.pop(seq, None)

    def pending(self) -> dict[int, str]:
        return {seq: leaf.hex() for seq, leaf in sorted(self.unaccounted.items())}

    def check(self) -> None:
        if self.unaccounted:
            first = min(self.unaccounted)
            raise VerificationError(
                f"audit entry {first} has no content and no signed pruning: it was erased",
                seq=first,
            )
