"""Principals and tokens in the service layer."""

from __future__ import annotations

import datetime as dt

import pytest

from governance.accounts import service
from governance.db import get_db, utcnow
from governance.errors import Conflict, InvalidInput, Unauthenticated
from tests.factories import TEST_ACTOR


@pytest.fixture
def session(app):
    with get_db(app).unit_of_work() as s:
        yield s


def test_only_the_hash_of_a_token_is_stored(session):
    principal = service.create_principal(session, "casey", actor=TEST_ACTOR)
    record, token = service.issue_token(session, principal, expires_at=None, actor=TEST_ACTOR)
    assert token.startswith("gov_") and len(token) > 40
    assert record.token_hash == service.hash_token(token)
    assert token not in record.model_dump_json()
    found, used = service.authenticate(session, token)
    assert found.name == "casey" and used.id == record.id
    assert used.last_used_at is not None


def test_expired_revoked_and_disabled_are_refused(session):
    principal = service.create_principal(session, "casey", actor=TEST_ACTOR)
    soon = utcnow() + dt.timedelta(minutes=1)
    expiring, expiring_token = service.issue_token(
        session, principal, expires_at=soon, actor=TEST_ACTOR
    )
    expiring.expires_at = utcnow() - dt.timedelta(seconds=1)
    session.add(expiring)
    session.commit()
    with pytest.raises(Unauthenticated, match="expired"):
        service.authenticate(session, expiring_token)

    revoked, revoked_token = service.issue_token(
        session, principal, expires_at=None, actor=TEST_ACTOR
    )
    service.revoke_token(session, revoked.id, actor=TEST_ACTOR)
    first_revocation = revoked.revoked_at
    service.revoke_token(session, revoked.id, actor=TEST_ACTOR)
    assert session.get(service.ApiToken, revoked.id).revoked_at == first_revocation
    with pytest.raises(Unauthenticated, match="revoked"):
        service.authenticate(session, revoked_token)

    _ok, ok_token = service.issue_token(session, principal, expires_at=None, actor=TEST_ACTOR)
    principal.disabled = True
    session.add(principal)
    session.commit()
    with pytest.raises(Unauthenticated, match="disabled"):
        service.authenticate(session, ok_token)


def test_names_are_unique_and_plain(session):
    service.create_principal(session, "casey", actor=TEST_ACTOR)
    with pytest.raises(Conflict):
        service.create_principal(session, "casey", actor=TEST_ACTOR)
    with pytest.raises(InvalidInput):
        service.create_principal(session, "Casey Jones", actor=TEST_ACTOR)
    assert [p.name for p in service.list_principals(session)] == ["admin", "casey"]


def test_expiry_in_the_past_is_refused(session):
    principal = service.create_principal(session, "casey", actor=TEST_ACTOR)
    with pytest.raises(InvalidInput):
        service.issue_token(
            session, principal, expires_at=utcnow() - dt.timedelta(days=1), actor=TEST_ACTOR
        )


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("12h", dt.timedelta(hours=12)),
        ("30d", dt.timedelta(days=30)),
        ("2w", dt.timedelta(days=14)),
    ],
)
def test_parse_expiry_durations(text, delta):
    now = utcnow()
    assert service.parse_expiry(text, 90, now=now) == now + delta


def test_parse_expiry_other_forms():
    now = utcnow()
    assert service.parse_expiry(None, 90, now=now) == now + dt.timedelta(days=90)
    assert service.parse_expiry("never", 90) is None
    assert service.parse_expiry("2030-01-01", 90) == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    # An ISO 8601 time with its Z and T as written (refused before: the text was lower-cased).
    assert service.parse_expiry("2030-12-02T01:11:22Z", 90) == dt.datetime(
        2030, 12, 2, 1, 11, 22, tzinfo=dt.UTC
    )
    assert service.parse_expiry("2030-12-02T01:11:22+02:00", 90) == dt.datetime(
        2030, 12, 1, 23, 11, 22, tzinfo=dt.UTC
    )
    assert service.parse_expiry("NEVER", 90) is None
    with pytest.raises(InvalidInput):
        service.parse_expiry("soon", 90)
    with pytest.raises(InvalidInput):
        service.parse_expiry("0d", 90)
