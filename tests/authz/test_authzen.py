"""The AuthZEN 1.0 evaluation API, with requests shaped like the specification's examples."""

from __future__ import annotations

import pytest

from tests.factories import auth, make_domain, principal_token


@pytest.fixture
def gateway(app, client):
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    return principal_token(app, "tax-gateway")  # decision-client in consumer-tax


def evaluation(subject: str, kind: str, name: str, action: str, **properties) -> dict:
    return {
        "subject": {"type": "user", "id": subject},
        "resource": {"type": kind, "id": name, "properties": properties},
        "action": {"name": action},
        "context": {"time": "2026-12-02T10:00:00Z"},
    }


def test_a_single_evaluation_answers_as_the_policy_does(client, gateway):
    allowed = client.post(
        "/access/v1/evaluation",
        json=evaluation("taxbot", "model", "tax-assistant", "query", domain="consumer-tax"),
        headers=auth(gateway),
    )
    assert allowed.status_code == 200
    body = allowed.get_json()
    assert body["decision"] is True and body["context"]["rule"][0] == "model-consumer"
    denied = client.post(
        "/access/v1/evaluation",
        json=evaluation("casey", "model", "tax-assistant", "query", domain="consumer-tax"),
        headers=auth(gateway),
    ).get_json()
    assert denied["decision"] is False and "rule" not in denied["context"]
    assert isinstance(denied["context"]["audit_seq"], int)
    # The domain may come from the context instead of the resource.
    body = evaluation("casey", "dataset", "returns", "upload")
    body["context"]["domain"] = "consumer-tax"
    assert client.post("/access/v1/evaluation", json=body, headers=auth(gateway)).get_json()[
        "decision"
    ]


def test_bad_and_unauthorized_evaluations_are_refused(client, gateway):
    body = evaluation("casey", "dataset", "returns", "upload")
    missing = client.post("/access/v1/evaluation", json=body, headers=auth(gateway))
    assert missing.status_code == 422
    assert missing.get_json()["error"]["details"][0]["field"] == "resource.properties.domain"
    no_subject = client.post(
        "/access/v1/evaluation", json={"resource": body["resource"]}, headers=auth(gateway)
    )
    assert no_subject.status_code == 422
    assert client.post("/access/v1/evaluation", json=body).status_code == 401
    # A caller without decision rights in a domain is refused there.
    other = evaluation("sam", "dataset", "books", "read", domain="smb-accounting")
    assert client.post("/access/v1/evaluation", json=other, headers=auth(gateway)).status_code == (
        403
    )


def test_a_batch_inherits_defaults_and_honours_its_semantic(client, gateway):
    request = {
        "subject": {"type": "user", "id": "casey"},
        "action": {"name": "upload"},
        "context": {"domain": "consumer-tax"},
        "evaluations": [
            {"resource": {"type": "dataset", "id": "returns"}},
            {"resource": {"type": "model", "id": "tax-assistant"}, "action": {"name": "query"}},
            {
                "resource": {"type": "dataset", "id": "returns"},
                "subject": {"type": "user", "id": "taxbot"},
            },
        ],
    }
    every = client.post("/access/v1/evaluations", json=request, headers=auth(gateway))
    assert every.status_code == 200
    assert [e["decision"] for e in every.get_json()["evaluations"]] == [True, False, False]
    request["options"] = {"evaluations_semantic": "deny_on_first_deny"}
    first_deny = client.post("/access/v1/evaluations", json=request, headers=auth(gateway))
    assert [e["decision"] for e in first_deny.get_json()["evaluations"]] == [True, False]
    request["options"] = {"evaluations_semantic": "permit_on_first_permit"}
    first_permit = client.post("/access/v1/evaluations", json=request, headers=auth(gateway))
    assert [e["decision"] for e in first_permit.get_json()["evaluations"]] == [True]
    # Without entries, the request is one evaluation.
    single = {
        "subject": {"type": "user", "id": "casey"},
        "resource": {"type": "dataset", "id": "r", "properties": {"domain": "consumer-tax"}},
        "action": {"name": "upload"},
    }
    answer = client.post("/access/v1/evaluations", json=single, headers=auth(gateway)).get_json()
    assert answer["decision"] is True and answer["context"]["rule"][0] == "data-steward"
    assert "evaluations" not in answer
    lacking = {"evaluations": [{"resource": {"type": "dataset", "id": "r"}}]}
    refused = client.post("/access/v1/evaluations", json=lacking, headers=auth(gateway))
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"][0]["field"] == "evaluations[0].subject"


def test_ids_longer_than_the_audit_columns_are_refused_before_any_write(client, gateway):
    long_subject = evaluation("u" * 150, "model", "tax-assistant", "query", domain="consumer-tax")
    refused = client.post("/access/v1/evaluation", json=long_subject, headers=auth(gateway))
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"][0]["field"] == "subject.id"
    long_object = evaluation("taxbot", "model", "m" * 199, "query", domain="consumer-tax")
    refused = client.post("/access/v1/evaluation", json=long_object, headers=auth(gateway))
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"][0]["field"] == "resource.id"
    # The next decision is written as usual.
    fine = evaluation("taxbot", "model", "tax-assistant", "query", domain="consumer-tax")
    assert client.post("/access/v1/evaluation", json=fine, headers=auth(gateway)).status_code == 200
