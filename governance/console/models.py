"""Console sessions: a signed-in browser, bound to the principal (and token) it signed in as."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import UTCDateTime, utcnow


class SessionEnd:
    """Why a session ended; kept on the row and in the audit entry."""

    SIGNED_OUT = "signed-out"
    IDLE = "idle"
    EXPIRED = "expired"
    TOKEN_INVALID = "token-invalid"  # noqa: S105 (a reason, not a secret)
    PRINCIPAL_CHANGED = "principal-changed"


class ConsoleSession(SQLModel, table=True):
    """One signed-in browser. Only the SHA-256 of the cookie is stored, as for API tokens, so a
    copy of the database signs nobody in; the CSRF token is derived from the cookie itself."""

    __tablename__ = "console_sessions"

    id: int | None = SQLField(default=None, primary_key=True)
    session_hash: str = SQLField(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    principal_id: int = SQLField(foreign_key="principals.id", nullable=False, index=True)
    # The API token exchanged at sign-in; a session dies with its token. None for single sign-on.
    token_id: str | None = SQLField(default=None, foreign_key="api_tokens.id", max_length=32)
    via: str = SQLField(max_length=8, nullable=False)  # "token" or "sso"
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_seen_at: dt.datetime = SQLField(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False
    )
    expires_at: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
    ended_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    ended_reason: str | None = SQLField(default=None, max_length=20)
