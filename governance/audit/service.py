"""Append to the audit log, sign checkpoints, serve proofs and verify the stored log.

Two ways in, one sequence:
- `record(session, actor, ...)` adds an entry inside the caller's transaction, so a state
  change and its audit entry commit together or not at all;
- `AuditLog.append(event)` hands an entry to a per-process group-commit writer: it blocks until
  the entry is durable, and concurrent callers share one transaction and one fsync.
Both take their sequence numbers by bumping the single `audit_head` row, which the database
serializes, so appends from every thread and process form one gap-free sequence.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from audit import merkle
from audit.bundle import VerificationError, accounted_prune
from audit.log import ENTRY_FIELDS, PRUNE_ACTION, Checkpoint, canonical, key_id, prune_seqs
from audit.note import Checkpoint as NoteCheckpoint
from audit.note import VerifierKey, sign_note
from governance import crypto
from governance.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from governance.audit.witnessing import WitnessClient, request_cosignatures
from governance.db import Database, mark_written, utcnow

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Never let raw values of these kinds reach the log: callers pass hashes instead.
FORBIDDEN_DETAIL_KEYS = frozenset({"prompt", "token", "password", "secret", "key", "record"})


def format_time(moment: dt.datetime) -> str:
    """Render a time the way entries and checkpoints carry it: UTC, microseconds, Z."""
    return moment.astimezone(dt.UTC).strftime(TIME_FORMAT)


@dataclass(frozen=True)
class Actor:
    """Who is acting, under which request and policy version."""

    principal: str
    request_id: str | None = None
    policy_hash: str | None = None


@dataclass
class AuditEvent:
    """One thing to log; it becomes an entry when it gets its sequence number."""

    principal: str
    action: str
    object: str
    domain: str | None
    decision: str
    policy_hash: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    time: dt.datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        leaked = FORBIDDEN_DETAIL_KEYS & set(self.details)
        if leaked:
            raise ValueError(f"audit details must not carry raw {sorted(leaked)}; hash them")


def entry_dict(seq: int, event: AuditEvent) -> dict[str, Any]:
    """Return the canonical entry for an event at a sequence number."""
    return {
        "seq": seq,
        "time": format_time(event.time),
        "principal": event.principal,
        "action": event.action,
        "object": event.object,
        "domain": event.domain,
        "decision": event.decision,
        "policy_hash": event.policy_hash,
        "request_id": event.request_id,
        "details": event.details,
    }


def row_entry(row: AuditEntry | sa.Row) -> dict[str, Any]:
    """Rebuild the canonical entry from a stored row's columns."""
    return {
        "seq": row.seq,
        "time": format_time(row.time),
        "principal": row.principal,
        "action": row.action,
        "object": row.object,
        "domain": row.domain,
        "decision": row.decision,
        "policy_hash": row.policy_hash,
        "request_id": row.request_id,
        "details": json.loads(row.details),
    }


# The stored columns of an entry: its canonical fields and the leaf hash computed from them.
ENTRY_COLUMNS = (*ENTRY_FIELDS, "leaf_hash")


@functools.lru_cache(maxsize=8)
def _append_statements(dialect: sa.Dialect) -> tuple[str, str, Any]:
    """The two statements of an append in the driver's own SQL. Appends are the one write
    every request makes, so they skip SQLAlchemy's statement construction and compilation
    (a third of a millisecond of CPU per single-entry append on PostgreSQL, measured)."""

    def mark(name: str) -> str:
        return f"%({name})s" if dialect.paramstyle in ("pyformat", "format") else f":{name}"

    # Built from constant names and placeholders only: no value is ever part of the text.
    bump = f"UPDATE audit_head SET size = size + {mark('n')} WHERE id = 1 RETURNING size"  # noqa: S608
    names, marks = ", ".join(ENTRY_COLUMNS), ", ".join(mark(c) for c in ENTRY_COLUMNS)
    insert = f"INSERT INTO audit_entries ({names}) VALUES ({marks})"  # noqa: S608
    # Times are bound as the column's type binds them (naive UTC text on SQLite).
    bind_time = AuditEntry.__table__.c.time.type.bind_processor(dialect) or (lambda v: v)
    return bump, insert, bind_time


def append_events(connection: sa.Connection | Session, events: Sequence[AuditEvent]) -> list[int]:
    """Give events the next sequence numbers and insert them in the caller's transaction."""
    if isinstance(connection, Session):
        mark_written(connection)
        connection = connection.connection()
    return _append_rows(connection.exec_driver_sql, connection.dialect, events)


def _append_rows(
    run: Callable[[str, Any], Any], dialect: sa.Dialect, events: Sequence[AuditEvent]
) -> list[int]:
    """The append itself, through `run(sql, params)` (a list of parameter sets: many rows):
    an SQLAlchemy connection's driver SQL, or the audit writer's own DBAPI cursor."""
    if not events:
        return []
    bump, insert, bind_time = _append_statements(dialect)
    new_size = run(bump, {"n": len(events)}).fetchone()[0]
    first = new_size - len(events) + 1
    rows = []
    for seq, event in enumerate(events, start=first):
        entry = entry_dict(seq, event)
        entry["leaf_hash"] = merkle.leaf_hash(canonical(entry)).hex()
        entry["time"] = bind_time(event.time)
        entry["details"] = canonical(event.details).decode()
        rows.append(entry)
    run(insert, rows if len(rows) > 1 else rows[0])
    return list(range(first, new_size + 1))


def record(
    session: Session,
    actor: Actor,
    action: str,
    obj: str,
    domain: str | None,
    *,
    decision: str = "ok",
    details: dict[str, Any] | None = None,
) -> int:
    """Log a state change inside the caller's transaction; the caller commits."""
    event = AuditEvent(
        principal=actor.principal,
        action=action,
        object=obj,
        domain=domain,
        decision=decision,
        policy_hash=actor.policy_hash,
        request_id=actor.request_id,
        details=details or {},
    )
    session.flush()
    return append_events(session, [event])[0]


# --- the tree, checkpoints and proofs -------------------------------------------------------


def log_size(session: Session) -> int:
    """Return the number of committed entries."""
    return session.exec(select(AuditHead.size).where(AuditHead.id == 1)).one()


def iter_leaf_hashes(connection, upto: int, after: int = 0, chunk: int = 20000) -> Iterator[bytes]:
    """Yield stored leaf hashes of entries after..upto in order, a chunk at a time."""
    table = AuditEntry.__table__
    position = after
    while position < upto:
        rows = connection.execute(
            sa.select(table.c.seq, table.c.leaf_hash)
            .where(table.c.seq > position, table.c.seq <= min(upto, position + chunk))
            .order_by(table.c.seq)
        ).all()
        if not rows:
            raise LookupError(f"audit entry {position + 1} is missing")
        for seq, leaf in rows:
            if seq != position + 1:
                raise LookupError(f"audit entry {position + 1} is missing")
            position = seq
            yield bytes.fromhex(leaf)


class TreeCache:
    """The compact range of the committed log, extended as it grows (one per process)."""

    def __init__(self) -> None:
        self._compact = merkle.CompactRange()
        self._lock = threading.Lock()

    def root_at(self, connection, size: int) -> bytes:
        """Return the root of the first `size` entries, reading only what is new."""
        with self._lock:
            if size < self._compact.size:
                return merkle.root(list(iter_leaf_hashes(connection, size)))
            self._compact.extend(iter_leaf_hashes(connection, size, after=self._compact.size))
            return self._compact.root()


def checkpoint_record(checkpoint: Checkpoint) -> AuditCheckpoint:
    return AuditCheckpoint(**checkpoint.to_dict())


def as_checkpoint(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(row.tree_size, row.root, row.timestamp, row.key_id, row.signature)


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """Return the checkpoint with the largest tree size."""
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
    return session.exec(query).first()


def checkpoint_at(session: Session, size: int) -> AuditCheckpoint | None:
    return session.exec(select(AuditCheckpoint).where(AuditCheckpoint.tree_size == size)).first()


def log_origin(public_key, configured: str | None = None) -> str:
    """The log's origin line and note key name: AUDIT_ORIGIN, else one derived from its key."""
    return configured or f"governance.local/audit/{key_id(public_key)}"


def log_verifier_key(key: Ed25519PrivateKey, origin: str | None = None) -> VerifierKey:
    """The C2SP note verifier key of the log (`name+hash+base64key`)."""
    return VerifierKey.of(log_origin(key.public_key(), origin), key.public_key())


# What retention leaves of an entry it prunes (governance.audit.pruning): the leaf hash, the
# time, action and domain stay; the rest is blanked.
TOMBSTONE = {"principal": "-", "object": "-", "request_id": None, "details": "{}"}


def is_tombstone(row: Any) -> bool:
    return all(getattr(row, k) == v for k, v in TOMBSTONE.items())


def entry_leaf(row: AuditEntry | sa.Row) -> bytes:
    """The leaf hash an entry row stands for: recomputed from its content (VerificationError
    when the content no longer matches the stored hash), or the stored hash of a pruned one,
    whose content retention removed."""
    if row.pruned_at is not None:
        return bytes.fromhex(row.leaf_hash)
    computed = merkle.leaf_hash(canonical(row_entry(row)))
    if computed.hex() != row.leaf_hash:
        raise VerificationError(
            f"audit entry {row.seq} was altered: its content no longer matches its hash",
            seq=row.seq,
        )
    return computed


def verify_tail(
    session: Session, public_key, tree: TreeCache, size: int, verified: int = 0
) -> None:
    """Before a checkpoint is signed over entries 1..size, check what no checkpoint vouches
    for yet: the last checkpoint's signature and root against the stored leaves, then every
    newer entry's content against its leaf hash (a pruned entry there, or a prune that does
    not account for its blanks, is tampering). Raise VerificationError naming the entry;
    nothing is signed over a tampered tail.

    `verified`: entries 1..verified were just checked, checkpoints included, in this same
    transaction (an export verifies the whole log first); only what lies beyond is read."""
    previous = session.exec(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.tree_size < size)
        .order_by(AuditCheckpoint.tree_size.desc())
        .limit(1)
    ).first()
    after = verified
    if previous is not None and previous.tree_size > verified:
        if not as_checkpoint(previous).verify(public_key):
            raise VerificationError(
                f"checkpoint at tree size {previous.tree_size} has a bad signature"
            )
        try:
            root = tree.root_at(session.connection(), previous.tree_size)
        except LookupError as exc:
            raise VerificationError(f"{exc}: the log was truncated") from exc
        if root.hex() != previous.root:
            raise VerificationError(
                f"the stored leaves no longer give the root of checkpoint {previous.tree_size}",
                seq=1,
            )
        after = previous.tree_size
    expected = after + 1
    connection = session.connection()
    while expected <= size:
        rows = connection.execute(
            select(AuditEntry)
            .where(AuditEntry.seq >= expected, AuditEntry.seq <= size)
            .order_by(AuditEntry.seq)
            .limit(5000)
        ).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected:
                raise VerificationError(f"audit entry {expected} is missing", seq=expected)
            if row.pruned_at is not None:
                raise VerificationError(
                    f"audit entry {row.seq} was blanked before any checkpoint covered it",
                    seq=row.seq,
                )
            entry_leaf(row)
            if row.action == PRUNE_ACTION and row.domain is None:
                # The entries it names lie before the tail: read their leaves to check it.
                try:
                    named = prune_seqs(json.loads(row.details).get("ranges"))
                except (ValueError, TypeError, AttributeError):
                    named = []  # accounted_prune says what is wrong with the entry
                blanked = {
                    r.seq: bytes.fromhex(r.leaf_hash)
                    for r in session.exec(select(AuditEntry).where(AuditEntry.seq.in_(named)))
                    if is_tombstone(r)
                }
                accounted_prune(row.seq, row.details, blanked, public_key)
            expected += 1
    if expected != size + 1:
        raise VerificationError(
            f"the log head says {size} entries but entry {expected} is missing", seq=expected
        )


def sign_checkpoint(
    session: Session,
    key: Ed25519PrivateKey,
    tree: TreeCache | None = None,
    *,
    origin: str | None = None,
    witnesses: Sequence[WitnessClient] = (),
    verified: int = 0,
) -> AuditCheckpoint | None:
    """Sign the log as it stands; return the checkpoint (None while the log is empty).

    The checkpoint is signed twice over: in the log's own JSON form and as a C2SP
    tlog-checkpoint note, which is then sent to the witnesses for their cosignatures.
    `verified`: entries 1..verified were verified in full in this transaction (see
    `verify_tail`).
    """
    size = log_size(session)
    if size == 0:
        return None
    existing = checkpoint_at(session, size)
    if existing is not None:
        return existing
    tree = tree or TreeCache()
    verify_tail(session, key.public_key(), tree, size, verified)
    root = tree.root_at(session.connection(), size)
    checkpoint = Checkpoint.sign(size, root, format_time(utcnow()), key)
    row = checkpoint_record(checkpoint)
    name = log_origin(key.public_key(), origin)
    row.note = sign_note(NoteCheckpoint(name, size, root).body(), name, key)
    session.add(row)
    try:
        session.commit()
    except sa.exc.IntegrityError:
        # Another process signed the same size first; theirs is as good.
        session.rollback()
        return checkpoint_at(session, size)
    if witnesses:
        request_cosignatures(
            session,
            row.note,
            size,
            witnesses,
            lambda old, new: consistency_proof(session, old, new),
        )
    return row


def inclusion_proof(session: Session, seq: int, tree_size: int) -> list[bytes]:
    """Return the audit path of entry seq in the tree of tree_size entries."""
    ranges = merkle.inclusion_proof_ranges(seq - 1, tree_size)
    return merkle.subtree_roots(ranges, iter_leaf_hashes(session.connection(), tree_size))


def consistency_proof(session: Session, old_size: int, new_size: int) -> list[bytes]:
    """Return the proof that the log at old_size is a prefix of the log at new_size."""
    ranges = merkle.consistency_proof_ranges(old_size, new_size)
    return merkle.subtree_roots(ranges, iter_leaf_hashes(session.connection(), new_size))


# --- the group-commit writer ----------------------------------------------------------------


class _Pending:
    __slots__ = ("done", "error", "event", "seq")

    def __init__(self, event: AuditEvent) -> None:
        self.event = event
        self.done = threading.Event()
        self.seq: int | None = None
        self.error: BaseException | None = None


class _NothingWritten(Exception):
    """An append that failed before anything was written (safe to try again in parts)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class AuditLog:
    """The audit log of one process: a group-commit writer, the tree cache and the signer."""

    def __init__(
        self,
        db: Database,
        home: str,
        *,
        checkpoint_seconds: float = 60.0,
        checkpoint_entries: int = 0,
        max_batch: int = 1000,
        origin: str | None = None,
        witnesses: Sequence[WitnessClient] = (),
    ) -> None:
        self.db = db
        # A checkpoint is cut at most `checkpoint_seconds` after the last, and as soon as
        # `checkpoint_entries` entries were appended since (0: by time only), so that the tail
        # no checkpoint vouches for stays small.
        self.checkpoint_entries = checkpoint_entries
        self._since_checkpoint = 0
        self.home = home
        self.origin = origin
        self.witnesses = list(witnesses)
        self.checkpoint_seconds = checkpoint_seconds
        self.max_batch = max_batch
        self.tree = TreeCache()
        self._queue: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._key: Ed25519PrivateKey | None = None
        self._connection: Any = None
        self._last_checkpoint = time.monotonic()
        self._checkpointer: threading.Thread | None = None

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = crypto.load_signing_key(self.home)
        return self._key

    def append(self, event: AuditEvent, timeout: float = 60.0) -> int:
        """Append one event and return its sequence number once it is durable."""
        return self.append_many([event], timeout)[0]

    def append_many(self, events: Iterable[AuditEvent], timeout: float = 60.0) -> list[int]:
        """Append events (in this order) and return their sequence numbers once durable."""
        self._ensure_writer()
        pending = [_Pending(e) for e in events]
        # One queue item: the events of one call go into the same transaction.
        self._queue.put(pending)
        for item in pending:
            if not item.done.wait(timeout):
                raise TimeoutError("the audit log did not confirm an append in time")
            if item.error is not None:
                raise RuntimeError("the audit log could not store an entry") from item.error
        return [item.seq for item in pending]  # type: ignore[misc]

    def _ensure_writer(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                # Wake at least once per checkpoint interval, so a burst of entries followed
                # by silence still gets its checkpoint.
                first = self._queue.get(timeout=self.checkpoint_seconds or None)
            except queue.Empty:
                self._maybe_checkpoint()
                continue
            if first is None:
                return
            calls = [list(first)]
            stop = False
            while sum(len(c) for c in calls) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                calls.append(list(item))
            self._write(calls)
            self._maybe_checkpoint()
            if stop:
                return

    def _writer_connection(self) -> Any:
        """The writer's own DBAPI connection, kept between batches (no checkout or ping per
        batch). The writer talks to the driver directly: an append is its whole job."""
        if self._connection is None:
            self._connection = self.db.engine.raw_connection()
        return self._connection

    def _drop_writer_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
            except Exception:  # It is being thrown away: nothing more to do with it.
                log.debug("closing the audit writer's connection failed", exc_info=True)
        self._connection = None

    def _append(self, events: list[AuditEvent]) -> list[int]:
        """One transaction on the writer's connection. A connection the database dropped
        while idle fails on its first statement, before anything was written: then, and only
        then, the batch is tried once more on a fresh connection. A failure at commit is never
        retried (it may have committed)."""
        dialect = self.db.engine.dialect
        for attempt in (1, 2):
            connection = self._writer_connection()
            cursor = connection.cursor()

            def run(sql: str, params: Any, cursor: Any = cursor) -> Any:
                if isinstance(params, list):
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, params)
                return cursor

            try:
                seqs = _append_rows(run, dialect, events)
            except dialect.loaded_dbapi.Error as exc:
                stale = dialect.is_disconnect(exc, connection, cursor)
                self._drop_writer_connection()
                if stale and attempt == 1:
                    continue
                raise _NothingWritten(exc) from exc
            except Exception as exc:
                self._drop_writer_connection()
                raise _NothingWritten(exc) from exc
            except BaseException:
                self._drop_writer_connection()
                raise
            try:
                connection.commit()
                cursor.close()
            except BaseException:
                self._drop_writer_connection()
                raise
            return seqs
        raise AssertionError("unreachable")

    def _write(self, calls: list[list[_Pending]]) -> None:
        """Write the entries of several calls in one transaction (group commit)."""
        batch = [item for call in calls for item in call]
        try:
            seqs = self._append([item.event for item in batch])
        except _NothingWritten as exc:
            if len(calls) > 1:
                # One request's entry the database refuses (a value too long for its column,
                # a character it cannot store) must not fail other requests' entries: nothing
                # was written, so each call is tried alone and only the bad one fails.
                for call in calls:
                    self._write([call])
                return
            log.error("audit append refused: %s", type(exc.cause).__name__)
            self._fail(batch, exc.cause)
            return
        except BaseException as exc:  # Every waiter must hear about the failure.
            log.exception("audit append failed")
            self._fail(batch, exc)
            return
        for item, seq in zip(batch, seqs, strict=True):
            item.seq = seq
            item.done.set()
        self._since_checkpoint += len(seqs)

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for item in batch:
            item.error = exc
            item.done.set()

    def _maybe_checkpoint(self) -> None:
        by_count = 0 < self.checkpoint_entries <= self._since_checkpoint
        if self.checkpoint_seconds <= 0 and not by_count:
            return
        if not by_count and time.monotonic() - self._last_checkpoint < self.checkpoint_seconds:
            return
        if self._checkpointer is not None and self._checkpointer.is_alive():
            return  # one at a time; the next batch asks again
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        # Signing verifies the tail, asks the witnesses and writes the checkpoint: a fraction
        # of a second that appends must not wait for, so it runs beside the writer.
        self._checkpointer = threading.Thread(
            target=self._checkpoint_quietly, name="audit-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_quietly(self) -> None:
        try:
            self.checkpoint()
        except Exception:
            log.exception("signing the periodic audit checkpoint failed")

    def checkpoint(self) -> AuditCheckpoint | None:
        """Sign a checkpoint over everything committed so far."""
        with self.db.session_scope() as session:
            return sign_checkpoint(
                session,
                self.signing_key,
                self.tree,
                origin=self.origin,
                witnesses=self.witnesses,
            )

    @property
    def verifier_key(self) -> VerifierKey:
        return log_verifier_key(self.signing_key, self.origin)

    def close(self) -> None:
        """Finish pending appends and stop the writer."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=30)
        stopped = self._thread is None or not self._thread.is_alive()
        if stopped and self._connection is not None:
            # The writer has stopped, so its connection is nobody's now.
            self._connection.close()
            self._connection = None
        self._thread = None
