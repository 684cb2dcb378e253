"""Principals and tokens over HTTP."""

from __future__ import annotations

from tests.factories import auth, principal_token, row_count


def test_admin_creates_principal_and_issues_token_shown_once(app, client):
    admin = auth(principal_token(app, "admin"))
    created = client.post(
        "/api/v1/principals", json={"name": "taxbot", "kind": "service"}, headers=admin
    )
    assert created.status_code == 201 and created.get_json()["kind"] == "service"
    issued = client.post(
        "/api/v1/principals/taxbot/tokens", json={"expires_in_days": 7}, headers=admin
    )
    assert issued.status_code == 201
    token = issued.get_json()["token"]
    listed = client.get("/api/v1/principals/taxbot/tokens", headers=admin)
    assert token not in listed.get_data(as_text=True)
    assert listed.get_json()["items"][0]["id"] == issued.get_json()["id"]
    me = client.get("/api/v1/me", headers=auth(token)).get_json()
    assert me["name"] == "taxbot"
    assert {"domain": "consumer-tax", "role": "model-consumer"} in me["roles"]


def test_duplicate_principal_is_409_and_bad_kind_422(app, client):
    admin = auth(principal_token(app, "admin"))
    assert client.post("/api/v1/principals", json={"name": "lee"}, headers=admin).status_code == 201
    assert client.post("/api/v1/principals", json={"name": "lee"}, headers=admin).status_code == 409
    bad = client.post("/api/v1/principals", json={"name": "x2", "kind": "robot"}, headers=admin)
    assert bad.status_code == 422
    assert bad.get_json()["error"]["details"][0]["field"] == "kind"
    assert row_count(app, "principals") == 2  # admin and lee


def test_non_admin_cannot_manage_principals_or_others_tokens(app, client):
    casey = auth(principal_token(app, "casey"))
    assert client.post("/api/v1/principals", json={"name": "eve"}, headers=casey).status_code == 403
    assert client.post("/api/v1/principals/admin/tokens", json={}, headers=casey).status_code == 403
    admin_token = principal_token(app, "admin")
    admin_tokens = client.get("/api/v1/principals/admin/tokens", headers=auth(admin_token))
    token_id = admin_tokens.get_json()["items"][0]["id"]
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=casey).status_code == 403
    # Unknown ids look the same as foreign ones to someone who may not revoke.
    assert client.delete("/api/v1/tokens/tok_missing", headers=casey).status_code == 403


def test_anyone_may_revoke_their_own_token(app, client):
    token = principal_token(app, "casey")
    me = client.get("/api/v1/me", headers=auth(token))
    assert me.status_code == 200
    admin = auth(principal_token(app, "admin"))
    token_id = client.get("/api/v1/principals/casey/tokens", headers=admin).get_json()["items"][0][
        "id"
    ]
    revoked = client.delete(f"/api/v1/tokens/{token_id}", headers=auth(token))
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 401
