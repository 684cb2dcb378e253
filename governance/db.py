"""Database engine, sessions and the column types every table shares."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import sqlalchemy as sa
from flask import Flask, current_app, g
from pydantic import AfterValidator, BeforeValidator
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

EXTENSION_KEY = "governance.db"

# The largest integer a 64-bit column holds: every id, number and size the API accepts is below
# it, so a hostile "99999999999999999999" is a 422 naming the field, never a database overflow.
BIGINT_MAX = 2**63 - 1
# The largest integer a 32-bit column holds: the ids of rows and the numbers of versions are
# INTEGER columns on PostgreSQL, so a path or query naming one above it is refused (422) or
# matches no route (404) before any query is made. The audit log's sequence numbers are BIGINT.
INT_MAX = 2**31 - 1

# Stable constraint names, so migrations can refer to them on every database.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def _assume_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _iso_only(value: Any) -> Any:
    # pydantic reads a bare number as seconds since 1970 ("to=0.5"): a caller who wrote a
    # number meant something else, so only ISO 8601 text is a time here.
    if isinstance(value, int | float) or (
        isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()
    ):
        raise ValueError("give an ISO 8601 date or time (2026-01-01, 2026-01-01T10:00:00Z)")
    return value


# A time an API caller gives: "2026-01-01" or "2026-01-01T10:00" without a zone is taken as UTC
# (the zone every time the service writes is in), never compared naive against aware values.
QueryTime = Annotated[dt.datetime, BeforeValidator(_iso_only), AfterValidator(_assume_utc)]


class UTCDateTime(sa.types.TypeDecorator):
    """Store UTC timestamps; always hand back timezone-aware values, SQLite included."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use governance.db.utcnow()")
        value = value.astimezone(dt.UTC)
        # SQLite has no time zones: keep naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten with zeros, not left in free pages of the file (erasure).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """Create an engine for the given URL, with the pragmas SQLite needs to behave."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def dialect_insert(bind: Engine | sa.Connection | Session):
    """The INSERT construct of the bind's dialect, the one with ON CONFLICT clauses."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return sqlite_insert if dialect.name == "sqlite" else postgresql_insert


def insert_or_ignore(bind: Engine | sa.Connection | Session, table: sa.Table, keys: list[str]):
    """An INSERT of `table` that skips a row whose `keys` another transaction already stored."""
    return dialect_insert(bind)(table).on_conflict_do_nothing(index_elements=keys)


def upsert(
    bind: Engine | sa.Connection | Session, table: sa.Table, keys: list[str], update: list[str]
):
    """An INSERT of `table` that, where a row with the same `keys` exists, sets its `update`
    columns to the new row's instead (the other columns keep what they hold)."""
    statement = dialect_insert(bind)(table)
    return statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name] for name in update}
    )


# --- the unit of work ------------------------------------------------------------------------
# A unit of work (a request, a job, a command) is committed by its entry point; services add to
# the caller's transaction and never commit. What must wait for the commit (announcing a job,
# publishing a blob) is registered with `on_commit`; what undoes a rolled-back step (discarding
# a staged blob) with `on_rollback`. `has_written` says whether a session's transaction holds
# writes: the request guard then appends its audit entries inside that transaction, since the
# log's writer, on its own connection, would wait on the locks it holds.

_ON_COMMIT = "governance.db.on_commit"
_ON_ROLLBACK = "governance.db.on_rollback"
_WROTE = "governance.db.wrote"


def on_commit(session: Session, action: Callable[[], object]) -> None:
    """Run `action` once the session's transaction commits (never if it rolls back)."""
    session.info.setdefault(_ON_COMMIT, []).append(action)


def on_rollback(session: Session, action: Callable[[], object]) -> None:
    """Run `action` if the session's transaction rolls back (never if it commits)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(action)


def mark_written(session: Session) -> None:
    """Note that the session's transaction holds writes (for writes made past the ORM)."""
    session.info[_WROTE] = True


def has_written(session: Session) -> bool:
    """Whether the session's open transaction holds writes."""
    return bool(session.info.get(_WROTE))


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    if session.new or session.dirty or session.deleted:
        session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state: Any) -> None:
    if not state.is_select:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    session.info.pop(_WROTE, None)
    session.info.pop(_ON_ROLLBACK, None)
    for action in session.info.pop(_ON_COMMIT, ()):
        action()


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_WROTE, None)
    session.info.pop(_ON_COMMIT, None)
    for action in session.info.pop(_ON_ROLLBACK, ()):
        action()


class Database:
    """The engine of one application, with a session per request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)

    def session(self) -> Session:
        """Open a new session; the caller closes it."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """Open a session for a block of work outside a request, closing it afterwards."""
        session = self.session()
        try:
            yield session
        finally:
            session.close()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Open a session for one unit of work of an entry point (a command, a step of the
        scheduler): committed when the block ends, rolled back if it raises."""
        with self.session_scope() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def init_app(self, app: Flask) -> None:
        """Attach to the app: one session per request, closed at teardown."""
        app.extensions[EXTENSION_KEY] = self

        @app.teardown_appcontext
        def _close_session(_exc: BaseException | None) -> None:
            session = g.pop("db_session", None)
            if session is not None:
                session.close()


def get_db(app: Flask | None = None) -> Database:
    """Return the Database of the given or current app."""
    return (app or current_app).extensions[EXTENSION_KEY]


def get_session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = get_db().session()
    return g.db_session


def scrub_journal(engine: Engine) -> bool:
    """After an erasure has committed, leave no copy of the erased rows in SQLite's write-ahead
    log: copy the log into the database (whose freed pages `secure_delete` zeroes) and
    truncate it. True when done; False when a reader still holds an old snapshot (the next
    checkpoint then does it) or the database is not SQLite (PostgreSQL's dead tuples are
    reclaimed by vacuum, and its WAL by its own retention: see README, "Erasure")."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as connection:
        busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
    return bool(busy is not None and busy[0] == 0)
