"""Principals and API tokens: creation, lookup, issue, revocation and authentication."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlmodel import Session, select

from governance.accounts.models import (
    PRINCIPAL_NAME_PATTERN,
    ApiToken,
    Principal,
    PrincipalKind,
)
from governance.audit.service import Actor
from governance.audit.service import record as audit
from governance.authz.policy import SYSTEM_DOMAIN
from governance.db import utcnow
from governance.errors import Conflict, InvalidInput, NotFound, Unauthenticated

TOKEN_PREFIX = "gov_"  # noqa: S105 (a marker, not a secret)
ADMIN_PRINCIPAL = "admin"


def hash_token(token: str) -> str:
    """Return the stored form of a bearer token: the hex SHA-256 of its text."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_principal(
    session: Session,
    name: str,
    kind: PrincipalKind | str = PrincipalKind.USER,
    display_name: str | None = None,
    *,
    actor: Actor,
) -> Principal:
    """Create a principal; a name already taken is a conflict."""
    if not re.fullmatch(PRINCIPAL_NAME_PATTERN, name):
        raise InvalidInput(
            "principal name must be 2-63 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter",
            details=[{"field": "name"}],
        )
    kind = PrincipalKind(kind)
    # Checked first, so a refusal leaves the caller's transaction as it was; the unique key
    # still decides a race (and then the transaction is rolled back).
    if find_principal(session, name) is not None:
        raise Conflict(f"principal {name!r} already exists", details={"name": name})
    principal = Principal(name=name, kind=kind.value, display_name=display_name)
    session.add(principal)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        session.rollback()
        raise Conflict(f"principal {name!r} already exists", details={"name": name}) from exc
    audit(
        session,
        actor,
        "principal.create",
        f"principal/{name}",
        SYSTEM_DOMAIN,
        details={"kind": kind.value},
    )
    return principal


def ensure_principal(
    session: Session, name: str, kind: PrincipalKind | str, *, actor: Actor
) -> bool:
    """Create a principal unless it exists; return True when it was created."""
    if find_principal(session, name) is not None:
        return False
    create_principal(session, name, kind, actor=actor)
    return True


def find_principal(session: Session, name: str) -> Principal | None:
    """Return the principal of that name, or None."""
    return session.exec(select(Principal).where(Principal.name == name)).first()


def get_principal(session: Session, name: str) -> Principal:
    """Return the principal of that name or raise NotFound."""
    principal = find_principal(session, name)
    if principal is None:
        raise NotFound(f"no principal named {name!r}", details={"name": name})
    return principal


def list_principals(session: Session) -> list[Principal]:
    """Return every principal, by name."""
    return list(session.exec(select(Principal).order_by(Principal.name)))


def issue_token(
    session: Session,
    principal: Principal,
    *,
    expires_at: dt.datetime | None,
    description: str | None = None,
    actor: Actor,
) -> tuple[ApiToken, str]:
    """Issue a new token; return its record and the token text, which is never stored."""
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expiry must be in the future", details=[{"field": "expires_at"}])
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        id="tok_" + secrets.token_hex(8),
        principal_id=principal.id,
        token_hash=hash_token(token),
        description=description,
        expires_at=expires_at,
    )
    session.add(record)
    session.flush()
    # The log names the token by id and hash prefix only; the token itself never enters it.
    audit(
        session,
        actor,
        "token.create",
        f"token/{record.id}",
        SYSTEM_DOMAIN,
        details={
            "principal": principal.name,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "token_sha256_prefix": record.token_hash[:12],
        },
    )
    return record, token


def list_tokens(session: Session, principal: Principal) -> list[ApiToken]:
    """Return a principal's tokens, newest first."""
    query = (
        select(ApiToken)
        .where(ApiToken.principal_id == principal.id)
        .order_by(ApiToken.created_at.desc())
    )
    return list(session.exec(query))


def get_token(session: Session, token_id: str) -> ApiToken:
    """Return a token record by id or raise NotFound."""
    record = session.get(ApiToken, token_id)
    if record is None:
        raise NotFound(f"no token {token_id!r}", details={"token_id": token_id})
    return record


def revoke_token(session: Session, token_id: str, *, actor: Actor) -> ApiToken:
    """Revoke a token; revoking it again keeps the first revocation time."""
    token = get_token(session, token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        audit(session, actor, "token.revoke", f"token/{token.id}", SYSTEM_DOMAIN)
    return token


@dataclass(frozen=True)
class Caller:
    """The principal a request authenticated as: what requests read of it, not a row."""

    id: int
    name: str
    kind: str
    display_name: str | None
    disabled: bool
    created_at: dt.datetime


@dataclass(frozen=True)
class TokenUse:
    """The token a request came with: what requests read of it, not a row."""

    id: str
    principal_id: int
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


_TOKENS = ApiToken.__table__.c  # type: ignore[attr-defined]
_PRINCIPALS = Principal.__table__.c  # type: ignore[attr-defined]
# One round trip, read without the ORM: this runs on every API request.
_AUTHENTICATE = (
    sa.select(
        _TOKENS.id,
        _TOKENS.principal_id,
        _TOKENS.expires_at,
        _TOKENS.revoked_at,
        _TOKENS.last_used_at,
        _PRINCIPALS.name,
        _PRINCIPALS.kind,
        _PRINCIPALS.display_name,
        _PRINCIPALS.disabled,
        _PRINCIPALS.created_at,
    )
    .join_from(ApiToken.__table__, Principal.__table__, _PRINCIPALS.id == _TOKENS.principal_id)
    .where(_TOKENS.token_hash == sa.bindparam("token_hash"))
)


def authenticate(session: Session, token: str) -> tuple[Caller, TokenUse]:
    """Return the principal a bearer token stands for, or raise Unauthenticated. The use of
    the token is written to the caller's transaction (at most once a minute); the caller
    commits."""
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated("malformed bearer token")
    # Through the connection, not the ORM session: a Core read needs none of its machinery.
    row = session.connection().execute(_AUTHENTICATE, {"token_hash": hash_token(token)}).first()
    if row is None:
        raise Unauthenticated("unknown bearer token")
    now = utcnow()
    record = TokenUse(row.id, row.principal_id, row.expires_at, row.revoked_at, row.last_used_at)
    principal = Caller(
        row.principal_id, row.name, row.kind, row.display_name, row.disabled, row.created_at
    )
    check_token(record, principal, now)
    # Record use at most once a minute, so busy clients do not turn every read into a write.
    if record.last_used_at is None or now - record.last_used_at > dt.timedelta(minutes=1):
        session.execute(
            sa.update(ApiToken.__table__).where(_TOKENS.id == record.id).values(last_used_at=now)
        )
        record = replace(record, last_used_at=now)
    return principal, record


def token_principal(session: Session, record: ApiToken, now: dt.datetime) -> Principal:
    """The principal of a stored token that is still good at `now`, or raise Unauthenticated."""
    principal = session.get(Principal, record.principal_id)
    check_token(record, principal, now)
    return principal


def check_token(
    record: ApiToken | TokenUse, principal: Principal | Caller | None, now: dt.datetime
) -> None:
    """Raise Unauthenticated unless the token and its principal are good at `now`."""
    if record.revoked_at is not None:
        raise Unauthenticated("token has been revoked", details={"token_id": record.id})
    if record.expires_at is not None and record.expires_at <= now:
        raise Unauthenticated("token has expired", details={"token_id": record.id})
    if principal is None or principal.disabled:
        raise Unauthenticated("principal is disabled", details={"token_id": record.id})


def token_owner(session: Session, record: ApiToken) -> str:
    """Return the name of the principal a token belongs to."""
    principal = session.get(Principal, record.principal_id)
    return principal.name if principal else "?"


DURATION = re.compile(r"^(\d+)([hdwy])$")


def parse_expiry(text: str | None, default_days: int, now: dt.datetime | None = None):
    """Turn `30d`, `12h`, `2w`, `1y`, an ISO date or `never` into an expiry time (or None)."""
    now = now or utcnow()
    if text is None:
        return now + dt.timedelta(days=default_days)
    text = text.strip()
    if text.lower() == "never":
        return None
    match = DURATION.match(text.lower())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        hours = {"h": 1, "d": 24, "w": 24 * 7, "y": 24 * 365}[unit] * amount
        if amount == 0:
            raise InvalidInput("expiry must be positive", details=[{"field": "expires"}])
        return now + dt.timedelta(hours=hours)
    try:
        # Any ISO 8601 time, `2026-12-02T01:11:22Z` included (read as written, not lower-cased).
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(
            f"cannot read expiry {text!r}: use 30d, 12h, 2w, 1y, an ISO date or 'never'",
            details=[{"field": "expires"}],
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment
