"""Consumers of the audit log that read it in order after a cursor: lifecycle webhooks and
the OpenLineage emitter. Entries up to the log's committed size are final: appends take their
numbers from the head row, which they hold until they commit, so no entry at or below a
committed size can still appear."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from governance.audit.models import AuditCursor, AuditEntry
from governance.audit.service import log_size


def locked_cursor(session: Session, name: str) -> AuditCursor:
    """The named cursor, locked for this transaction (a no-op update takes the row lock on
    PostgreSQL and the write lock on SQLite, so two readers of one cursor take turns); a new
    cursor starts at the beginning of the log."""
    table = AuditCursor.__table__
    locked = session.execute(
        sa.update(table).where(table.c.name == name).values(audit_seq=table.c.audit_seq)
    ).rowcount
    if not locked:
        session.add(AuditCursor(name=name, audit_seq=0))
        session.flush()
    cursor = session.get(AuditCursor, name, populate_existing=True)
    assert cursor is not None
    return cursor


def entries_after(
    session: Session, after: int, batch: int, actions: Iterable[str] | None = None
) -> tuple[Sequence[AuditEntry], int]:
    """Committed entries after `after` (of these actions), at most `batch`, and the position
    the cursor moves to once they are handled."""
    size = log_size(session)
    query = select(AuditEntry).where(AuditEntry.seq > after, AuditEntry.seq <= size)
    if actions is not None:
        query = query.where(col(AuditEntry.action).in_(tuple(actions)))
    entries = session.exec(query.order_by(AuditEntry.seq).limit(batch)).all()
    return entries, (entries[-1].seq if len(entries) == batch else max(size, after))
