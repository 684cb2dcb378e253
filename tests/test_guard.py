"""Every route is guarded; roles in one domain give nothing in another."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from flask_openapi3 import APIBlueprint

from governance import runtime
from governance.app import create_app
from governance.console.blueprint import PUBLIC_ENDPOINTS as CONSOLE_PUBLIC_ENDPOINTS
from governance.gateway.limits import RateLimiter
from governance.web.hooks import PUBLIC_ENDPOINTS
from tests.factories import auth, close_app, make_domain, principal_token


def concrete_path(rule) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"probe-\1", rule.rule)


def test_every_route_but_the_public_ones_answers_401_without_credentials(app, client):
    probed = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS | CONSOLE_PUBLIC_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if rule.endpoint.startswith("console."):
                # Console pages send a browser without a session to sign in; forms are refused.
                response = client.open(concrete_path(rule), method=method)
                if method == "GET":
                    assert response.status_code == 302, rule.rule
                    assert response.headers["Location"].startswith("/console/sign-in?next=")
                else:
                    assert response.status_code == 401, f"{method} {rule.rule}"
                probed += 1
                continue
            response = client.open(concrete_path(rule), method=method, json={})
            assert response.status_code == 401, (
                f"{method} {rule.rule} answered {response.status_code}"
            )
            # The OpenAI-compatible routes answer in OpenAI's codes.
            expected = "invalid_api_key" if rule.rule.startswith("/v1/") else "unauthenticated"
            assert response.get_json()["error"]["code"] == expected, rule.rule
            probed += 1
    assert probed >= 10


def test_every_openapi_operation_is_guarded(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    for path, operations in spec["paths"].items():
        url = re.sub(r"\{([^}]+)\}", r"probe-\1", path)
        for method in operations:
            response = client.open(url, method=method.upper(), json={})
            public = ("/api/v1/health", "/.well-known/authzen-configuration")
            expected = 200 if path in public else 401
            assert response.status_code == expected, f"{method} {path}"


def test_public_endpoints_answer_without_credentials(client):
    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.get_json()["database"] == "ok"
    spec = client.get("/openapi.json").get_json()
    assert "/api/v1/domains/{name}" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_request_schemas_in_openapi_come_from_the_validating_models(client):
    spec = client.get("/openapi.json").get_json()
    schema = spec["components"]["schemas"]["DomainCreate"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "jurisdiction", "retention_days"}


def test_no_role_in_a_domain_means_403_there(app, client):
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    casey = principal_token(app, "casey")  # data-steward in consumer-tax only
    assert client.get("/api/v1/domains/consumer-tax", headers=auth(casey)).status_code == 200
    denied = client.get("/api/v1/domains/smb-accounting", headers=auth(casey))
    assert denied.status_code == 403
    assert denied.get_json()["error"]["code"] == "forbidden"
    assert "jurisdiction" not in denied.get_data(as_text=True)
    patched = client.patch(
        "/api/v1/domains/smb-accounting", json={"description": "mine"}, headers=auth(casey)
    )
    assert patched.status_code == 403


def test_no_other_domain_leaks_through_lists_or_names(app, client):
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    casey = principal_token(app, "casey")
    listed = client.get("/api/v1/domains", headers=auth(casey)).get_json()["items"]
    assert [d["name"] for d in listed] == ["consumer-tax"]
    # A domain that does not exist and one that exists but is foreign look the same.
    missing = client.get("/api/v1/domains/no-such-domain", headers=auth(casey))
    foreign = client.get("/api/v1/domains/smb-accounting", headers=auth(casey))
    assert missing.status_code == foreign.status_code == 403


def test_principal_without_any_role_gets_nothing(app, client):
    make_domain(app, "consumer-tax")
    nobody = principal_token(app, "nobody")
    assert client.get("/api/v1/domains", headers=auth(nobody)).get_json()["items"] == []
    assert client.get("/api/v1/domains/consumer-tax", headers=auth(nobody)).status_code == 403
    assert client.get("/api/v1/principals", headers=auth(nobody)).status_code == 403
    assert client.get("/api/v1/me", headers=auth(nobody)).get_json()["roles"] == []


def test_a_view_that_forgets_to_authorize_does_not_answer(config):
    app = create_app({**config, "TESTING": True})
    careless = APIBlueprint("careless", __name__, url_prefix="/api/v1/careless")

    @careless.get("")
    def open_door():
        return {"secret": "inside"}

    app.register_api(careless)
    try:
        token = principal_token(app, "admin")
        response = app.test_client().get("/api/v1/careless", headers=auth(token))
        assert response.status_code == 500
        assert "secret" not in response.get_data(as_text=True)
    finally:
        close_app(app)


@pytest.mark.parametrize(
    "header", ["Token abc", "Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer gov_x"]
)
def test_malformed_or_unknown_credentials_are_401(client, header):
    response = client.get("/api/v1/domains", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_request_ids_are_echoed_only_when_plain(app, client):
    token = principal_token(app, "admin")
    plain = client.get("/api/v1/me", headers={**auth(token), "X-Request-Id": "req-42"})
    assert plain.headers["X-Request-Id"] == "req-42"
    hostile = client.get("/api/v1/me", headers={**auth(token), "X-Request-Id": "x" * 500})
    assert hostile.status_code == 200
    assert len(hostile.headers["X-Request-Id"]) == 32


def test_repeated_failed_authentication_is_rate_limited_and_audited(app, client):
    from governance.audit.models import AuditEntry
    from governance.db import get_db

    runtime.of(app).use(auth_limiter=RateLimiter(3))
    answers = [
        client.get("/api/v1/domains", headers={"Authorization": "Bearer wrong"}).status_code
        for _ in range(5)
    ]
    assert answers == [401, 401, 401, 429, 429]
    limited = client.get("/api/v1/domains", headers={"Authorization": "Bearer wrong"})
    assert limited.headers["Retry-After"] == "60"
    with get_db(app).unit_of_work() as session:
        rows = session.execute(
            sa.select(AuditEntry.details).where(AuditEntry.action == "authenticate")
        ).scalars()
        reasons = [json.loads(d)["reason"] if isinstance(d, str) else d["reason"] for d in rows]
    assert reasons.count("rate_limited") == 3


def test_a_flood_of_bad_tokens_never_refuses_a_valid_one(app, client):
    runtime.of(app).use(auth_limiter=RateLimiter(3))
    admin = principal_token(app, "admin")
    bad = [
        client.get("/api/v1/domains", headers={"Authorization": f"Bearer gov_wrong{i}"})
        for i in range(10)
    ]
    assert [r.status_code for r in bad] == [401] * 3 + [429] * 7
    # Same address, right after the flood: the valid token answers.
    assert client.get("/api/v1/domains", headers=auth(admin)).status_code == 200


def test_failures_count_per_credential_across_addresses(app, client):
    runtime.of(app).use(auth_limiter=RateLimiter(3))
    answers = [
        client.get(
            "/api/v1/domains",
            headers={"Authorization": "Bearer gov_stolen"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{i}"},
        ).status_code
        for i in range(5)
    ]
    assert answers == [401, 401, 401, 429, 429]


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(app, client):
    runtime.of(app).use(auth_limiter=RateLimiter(2))
    app.config["TRUSTED_PROXIES"] = "10.9.9.9"

    def failing(peer: str, forwarded: str, token: str) -> int:
        return client.get(
            "/api/v1/domains",
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": peer},
        ).status_code

    # Behind the trusted proxy, two clients have budgets of their own.
    assert [failing("10.9.9.9", "203.0.113.1", f"gov_a{i}") for i in range(3)] == [401, 401, 429]
    assert failing("10.9.9.9", "203.0.113.2", "gov_b") == 401
    # An untrusted peer cannot pick a fresh address by writing the header itself.
    assert [failing("198.51.100.7", f"192.0.2.{i}", f"gov_c{i}") for i in range(3)] == [
        401,
        401,
        429,
    ]


def test_the_root_points_to_the_console_and_the_api(client):
    browser = client.get("/", headers={"Accept": "text/html"})
    assert browser.status_code == 302 and browser.headers["Location"].endswith("/console/")
    program = client.get("/", headers={"Accept": "application/json"}).get_json()
    assert program["openapi"] == "/openapi.json" and program["console"] == "/console/"


def test_the_api_docs_are_served_without_credentials_and_offline(client):
    page = client.get("/docs/swagger")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    script = client.get("/docs/swagger/js/swagger-ui-bundle.js")
    assert script.status_code == 200
    script.close()
    spec = client.get("/docs/openapi.json").get_json()
    upload = spec["paths"]["/api/v1/datasets/{dataset_id}/versions"]["post"]["requestBody"]
    assert "application/x-ndjson" in upload["content"]
    export = spec["paths"]["/api/v1/audit/export"]["get"]["responses"]["200"]["content"]
    assert {"text/csv", "application/x-ndjson", "application/gzip"} <= set(export)


def test_health_names_a_child_that_does_not_answer(config):
    """The engine down (nothing on its port) and the guard in process: the service answers 200
    `degraded`, naming which part does not answer."""
    app = create_app(
        {
            **config,
            "TESTING": True,
            "SERVING_URL": "http://127.0.0.1:9",
            "GUARDRAILS_URL": "inprocess",
        }
    )
    try:
        answer = app.test_client().get("/api/v1/health")
        assert answer.status_code == 200
        assert answer.get_json() == {
            "status": "degraded",
            "database": "ok",
            "engine": "unreachable",
            "guardrails": "in process",
        }
    finally:
        close_app(app)
