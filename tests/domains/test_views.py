"""Domains over HTTP: the happy path, and bad input that gets its 4xx and changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from governance.accounts import service as accounts
from governance.db import get_db
from tests.factories import TEST_ACTOR, auth, make_domain, principal_token, row_count

GOOD = {
    "name": "consumer-tax",
    "description": "Form 1040",
    "jurisdiction": "US",
    "retention_days": 2555,
}


@pytest.fixture
def admin(app):
    return auth(principal_token(app, "admin"))


def test_create_read_update_list(client, admin):
    created = client.post("/api/v1/domains", json=GOOD, headers=admin)
    assert created.status_code == 201
    body = created.get_json()
    assert body["name"] == "consumer-tax" and body["created_by"] == "admin"
    fetched = client.get("/api/v1/domains/consumer-tax", headers=admin).get_json()
    assert fetched["jurisdiction"] == "US"
    patched = client.patch(
        "/api/v1/domains/consumer-tax", json={"retention_days": 3650}, headers=admin
    )
    assert patched.status_code == 200 and patched.get_json()["retention_days"] == 3650
    assert patched.get_json()["description"] == "Form 1040"
    listed = client.get("/api/v1/domains", headers=admin).get_json()["items"]
    assert [d["name"] for d in listed] == ["consumer-tax"]


def test_duplicate_domain_is_409(app, client, admin):
    assert client.post("/api/v1/domains", json=GOOD, headers=admin).status_code == 201
    again = client.post("/api/v1/domains", json=GOOD, headers=admin)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"
    assert row_count(app, "domains") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "colour": "blue"}, "colour"),
        ({**GOOD, "retention_days": "forever"}, "retention_days"),
        ({**GOOD, "retention_days": 0}, "retention_days"),
        ({**GOOD, "jurisdiction": "United States"}, "jurisdiction"),
        ({**GOOD, "name": "Consumer Tax!"}, "name"),
        ({**GOOD, "name": "system"}, "name"),
        ({k: v for k, v in GOOD.items() if k != "jurisdiction"}, "jurisdiction"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(app, client, admin, body, field):
    response = client.post("/api/v1/domains", json=body, headers=admin)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_input"
    assert field in [d["field"] for d in error["details"]]
    assert row_count(app, "domains") == 0


def test_malformed_json_is_400_naming_the_line(app, client, admin):
    response = client.post(
        "/api/v1/domains",
        data='{\n  "name": "consumer-tax",\n  "jurisdiction": US\n}',
        content_type="application/json",
        headers=admin,
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "malformed_json"
    assert error["details"]["line"] == 3
    assert row_count(app, "domains") == 0


def test_non_json_body_is_415(app, client, admin):
    response = client.post(
        "/api/v1/domains", data="name=consumer-tax", content_type="text/plain", headers=admin
    )
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_non_utf8_body_is_400(client, admin):
    response = client.post(
        "/api/v1/domains", data=b'{"name": "\xff"}', content_type="application/json", headers=admin
    )
    assert response.status_code == 400


def test_oversize_body_is_413(app, client, admin):
    huge = {**GOOD, "description": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}
    response = client.post("/api/v1/domains", json=huge, headers=admin)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert row_count(app, "domains") == 0


def test_unknown_domain_is_404_for_who_may_read_any(client, admin):
    response = client.get("/api/v1/domains/nowhere", headers=admin)
    assert response.status_code == 404
    assert response.get_json()["error"]["details"] == {"name": "nowhere"}


def test_unknown_route_and_wrong_method_use_the_envelope(client, admin):
    assert client.get("/api/v1/nothing-here", headers=admin).get_json()["error"]["code"] == (
        "not_found"
    )
    wrong = client.put("/api/v1/domains/consumer-tax", json={}, headers=admin)
    assert wrong.status_code == 405
    assert wrong.get_json()["error"]["code"] == "method_not_allowed"


def test_expired_and_revoked_tokens_are_401_and_change_nothing(app, client):
    make_domain(app, "consumer-tax")
    expired = principal_token(app, "admin", expires_in=dt.timedelta(seconds=-1))
    response = client.post("/api/v1/domains", json={**GOOD, "name": "other"}, headers=auth(expired))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "token has expired"

    token = principal_token(app, "admin")
    with get_db(app).unit_of_work() as session:
        record = session.exec(
            accounts.select(accounts.ApiToken).where(
                accounts.ApiToken.token_hash == accounts.hash_token(token)
            )
        ).one()
        accounts.revoke_token(session, record.id, actor=TEST_ACTOR)
    response = client.post("/api/v1/domains", json={**GOOD, "name": "other"}, headers=auth(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "token has been revoked"
    assert row_count(app, "domains") == 1


def test_errors_never_carry_a_traceback(client, admin):
    response = client.post(
        "/api/v1/domains", data="[", content_type="application/json", headers=admin
    )
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<html" not in text.lower()
