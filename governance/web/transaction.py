"""A request is one unit of work: the app commits its session when the view returns and rolls
it back when anything raises (`governance.app.GovernanceApp`); views and the services they call
add to that transaction and never commit. A rolled-back request takes its writes with it; the
audit entries of its decisions are appended again, durably (`guard.append`)."""

from __future__ import annotations

from flask import g

from governance.db import has_written


def commit_request() -> None:
    """Commit what the request wrote (nothing to do when it only read)."""
    session = g.get("db_session")
    if session is not None and (
        has_written(session) or session.new or session.dirty or session.deleted
    ):
        session.commit()


def rollback_request() -> None:
    """Undo what the request wrote (its decisions' entries are kept: `guard.append`)."""
    session = g.get("db_session")
    if session is not None and session.in_transaction():
        session.rollback()
