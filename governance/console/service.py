"""Console sessions: start one from an API token or a trusted single-sign-on name, find it
again from its cookie (ending it when idle, expired or its token is no longer good), end it.

The cookie holds 32 random bytes; the database holds their SHA-256. The CSRF token of a session
is an HMAC of a fixed label under the cookie value, so it needs no storage, differs per session,
and cannot be computed from a copy of the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlmodel import Session, select

from governance.accounts import service as accounts
from governance.accounts.models import ApiToken, Principal
from governance.audit.service import Actor, record
from governance.console.models import ConsoleSession, SessionEnd
from governance.db import utcnow
from governance.errors import Unauthenticated

# Write last_seen_at at most this often, so that reading pages does not turn into a write per
# request; idle expiry is therefore exact to within this interval.
TOUCH_INTERVAL = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class SessionLimits:
    idle: dt.timedelta
    lifetime: dt.timedelta


def csrf_token(cookie: str) -> str:
    """The CSRF token of the session whose cookie this is."""
    return hmac.new(cookie.encode(), b"governance-console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(cookie: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(csrf_token(cookie), submitted)


def start_session(
    session: Session,
    principal: Principal | accounts.Caller,
    token: ApiToken | accounts.TokenUse | None,
    limits: SessionLimits,
    *,
    actor: Actor,
) -> tuple[str, ConsoleSession]:
    """Create a session and return its cookie value (shown once) with the row."""
    cookie = secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + limits.lifetime
    # A session never outlives the token it was exchanged for.
    if token is not None and token.expires_at is not None:
        expires = min(expires, token.expires_at)
    row = ConsoleSession(
        session_hash=accounts.hash_token(cookie),
        principal_id=principal.id,
        token_id=token.id if token else None,
        via="token" if token else "sso",
        created_at=now,
        last_seen_at=now,
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "console.sign-in",
        f"console-session/{row.id}",
        None,
        details={"via": row.via, "token_id": row.token_id, "expires_at": expires.isoformat()},
    )
    return cookie, row


def sign_in_with_token(
    session: Session, token: str, limits: SessionLimits, *, actor: Actor
) -> tuple[str, ConsoleSession, accounts.Caller]:
    """Exchange an API token for a session; raise Unauthenticated as the API would."""
    principal, record_ = accounts.authenticate(session, token)
    cookie, row = start_session(
        session, principal, record_, limits, actor=replace(actor, principal=principal.name)
    )
    return cookie, row, principal


def end_session(session: Session, row: ConsoleSession, reason: str, *, actor: Actor) -> None:
    """End a session (once) and log why."""
    ended = session.execute(
        sa.update(ConsoleSession)
        .where(ConsoleSession.id == row.id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=utcnow(), ended_reason=reason)
    )
    if ended.rowcount == 1:
        record(
            session,
            actor,
            "console.sign-out",
            f"console-session/{row.id}",
            None,
            details={"reason": reason},
        )


def session_problem(
    session: Session, row: ConsoleSession, limits: SessionLimits, now: dt.datetime
) -> str | None:
    """Why this open session may no longer be used, or None."""
    if now >= row.expires_at:
        return SessionEnd.EXPIRED
    if now - row.last_seen_at >= limits.idle:
        return SessionEnd.IDLE
    if row.token_id is None:  # single sign-on: the principal must still be enabled
        principal = session.get(Principal, row.principal_id)
        return SessionEnd.TOKEN_INVALID if principal is None or principal.disabled else None
    token = session.get(ApiToken, row.token_id)
    if token is None:
        return SessionEnd.TOKEN_INVALID
    try:
        accounts.token_principal(session, token, now)
    except Unauthenticated:
        return SessionEnd.TOKEN_INVALID
    return None


def resume_session(
    session: Session, cookie: str, limits: SessionLimits, *, actor: Actor
) -> tuple[ConsoleSession, Principal]:
    """Return the open session a cookie names and its principal, or raise Unauthenticated
    (details.reason says why: unknown, ended, idle, expired, token-invalid)."""
    row = session.exec(
        select(ConsoleSession).where(ConsoleSession.session_hash == accounts.hash_token(cookie))
    ).first()
    if row is None:
        raise Unauthenticated("not signed in", details={"reason": "unknown"})
    if row.ended_at is not None:
        raise Unauthenticated("this session has ended", details={"reason": row.ended_reason})
    now = utcnow()
    problem = session_problem(session, row, limits, now)
    if problem is not None:
        principal = session.get(Principal, row.principal_id)
        who = principal.name if principal else "anonymous"
        end_session(session, row, problem, actor=replace(actor, principal=who))
        raise Unauthenticated("this session has ended", details={"reason": problem})
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
        session.add(row)
    return row, session.get(Principal, row.principal_id)
