"""The AuthZEN 1.0 evaluation API, with requests shaped like the specification's examples."""

from __future__ import annotations

import pytest

from tests.factories import auth, make_domain, make_family, principal_token


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
    # A resource in no domain this PDP knows: nothing grants it (deny by default), with why.
    body = evaluation("casey", "dataset", "returns", "upload")
    missing = client.post("/access/v1/evaluation", json=body, headers=auth(gateway))
    assert missing.status_code == 200
    answer = missing.get_json()
    assert answer["decision"] is False and answer["context"]["error"]["status"] == 400
    assert "no domain" in answer["context"]["reason"]
    no_subject = client.post(
        "/access/v1/evaluation", json={"resource": body["resource"]}, headers=auth(gateway)
    )
    assert no_subject.status_code == 400
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
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"][0]["field"] == "evaluations[0].subject"


def test_ids_longer_than_the_audit_columns_are_refused_before_any_write(client, gateway):
    long_subject = evaluation("u" * 150, "model", "tax-assistant", "query", domain="consumer-tax")
    refused = client.post("/access/v1/evaluation", json=long_subject, headers=auth(gateway))
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"][0]["field"] == "subject.id"
    long_object = evaluation("taxbot", "model", "m" * 199, "query", domain="consumer-tax")
    refused = client.post("/access/v1/evaluation", json=long_object, headers=auth(gateway))
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"][0]["field"] == "resource.id"
    # The next decision is written as usual.
    fine = evaluation("taxbot", "model", "tax-assistant", "query", domain="consumer-tax")
    assert client.post("/access/v1/evaluation", json=fine, headers=auth(gateway)).status_code == 200


def test_errors_are_400_with_the_message_at_the_top_level(client, gateway):
    # AuthZEN's HTTPS binding: a request the PDP cannot evaluate is a 400 whose body carries
    # the message; the envelope names the field beside it.
    no_action = {
        "subject": {"type": "user", "id": "casey"},
        "resource": {"type": "dataset", "id": "r", "properties": {"domain": "consumer-tax"}},
    }
    answer = client.post("/access/v1/evaluation", json=no_action, headers=auth(gateway))
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["status"] == 400 and "action" in body["message"]
    assert body["error"]["details"][0]["field"] == "action"
    no_type = {**no_action, "action": {"name": "read"}, "subject": {"id": "casey"}}
    answer = client.post("/access/v1/evaluation", json=no_type, headers=auth(gateway))
    assert answer.status_code == 400 and answer.get_json()["error"]["details"][0]["field"] == (
        "subject.type"
    )


def test_the_discovery_document_names_every_endpoint(client):
    answer = client.get("/.well-known/authzen-configuration")  # public: no credentials
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    document = answer.get_json()
    pdp = document["policy_decision_point"]
    assert pdp == "http://localhost"
    for key, path in (
        ("access_evaluation_endpoint", "/access/v1/evaluation"),
        ("access_evaluations_endpoint", "/access/v1/evaluations"),
        ("search_subject_endpoint", "/access/v1/search/subject"),
        ("search_resource_endpoint", "/access/v1/search/resource"),
        ("search_action_endpoint", "/access/v1/search/action"),
    ):
        assert document[key] == pdp + path
        # Each named endpoint exists (it answers 401 without credentials, not 404).
        assert client.post(path, json={}).status_code == 401


def test_the_domain_comes_from_the_resource_when_it_names_one(app, client, gateway):
    make_family(app, "tax-assistant", "consumer-tax")
    spec_shaped = {
        "subject": {"type": "user", "id": "taxbot"},
        "resource": {"type": "model", "id": "tax-assistant"},
        "action": {"name": "query"},
    }
    answer = client.post("/access/v1/evaluation", json=spec_shaped, headers=auth(gateway))
    assert answer.status_code == 200 and answer.get_json()["decision"] is True
    unknown = {**spec_shaped, "resource": {"type": "model", "id": "no-such-family"}}
    refused = client.post("/access/v1/evaluation", json=unknown, headers=auth(gateway))
    assert refused.status_code == 200 and refused.get_json()["decision"] is False
    domain = {**spec_shaped, "resource": {"type": "domain", "id": "consumer-tax"}}
    domain["action"] = {"name": "read"}
    domain["subject"] = {"type": "user", "id": "casey"}
    assert client.post("/access/v1/evaluation", json=domain, headers=auth(gateway)).get_json()[
        "decision"
    ]


def test_subject_search_finds_holders_through_roles_and_pages(app, client, gateway):
    make_family(app, "tax-assistant", "consumer-tax")
    # The specification's example, with this policy's vocabulary.
    request = {
        "subject": {"type": "user"},
        "action": {"name": "read"},
        "resource": {"type": "model", "id": "tax-assistant"},
        "context": {"time": "2026-12-06T01:22-07:00"},
    }
    whole = client.post("/access/v1/search/subject", json=request, headers=auth(gateway))
    assert whole.status_code == 200, whole.get_json()
    body = whole.get_json()
    assert next(iter(body)) == "page" and body["page"]["next_token"] == ""
    names = [r["id"] for r in body["results"]]
    assert names == sorted(names) and {"admin", "priya", "lee", "morgan", "quinn"} <= set(names)
    assert "casey" not in names and "sam" not in names  # smb's steward reads nothing here
    assert all(r["type"] == "user" for r in body["results"])
    # Every result, evaluated, is allowed (AuthZEN §8.1).
    for name in names:
        asked = {
            "subject": {"type": "user", "id": name},
            "action": request["action"],
            "resource": request["resource"],
        }
        assert client.post("/access/v1/evaluation", json=asked, headers=auth(gateway)).get_json()[
            "decision"
        ], name
    # Pages of two, joined, are the whole answer; a changed request with a token is a 400.
    seen, token = [], None
    while True:
        paged = {**request, "page": {"limit": 2, **({"token": token} if token else {})}}
        page = client.post(
            "/access/v1/search/subject", json=paged, headers=auth(gateway)
        ).get_json()
        assert page["page"]["count"] == len(page["results"]) <= 2
        assert page["page"]["total"] == len(names)
        seen += [r["id"] for r in page["results"]]
        token = page["page"]["next_token"]
        if not token:
            break
        changed = {**paged, "action": {"name": "query"}, "page": {"limit": 2, "token": token}}
        refused = client.post("/access/v1/search/subject", json=changed, headers=auth(gateway))
        assert refused.status_code == 400 and refused.get_json()["error"]["details"][0][
            "field"
        ] == ("page.token")
    assert seen == names
    forged = {**request, "page": {"token": "bm90LWEtdG9rZW4"}}
    assert (
        client.post("/access/v1/search/subject", json=forged, headers=auth(gateway)).status_code
        == 400
    )


def test_action_and_resource_search(app, client, gateway):
    make_family(app, "tax-assistant", "consumer-tax")
    actions = client.post(
        "/access/v1/search/action",
        json={
            "subject": {"type": "user", "id": "morgan"},
            "resource": {"type": "model", "id": "tax-assistant"},
        },
        headers=auth(gateway),
    )
    assert actions.status_code == 200
    assert [r["name"] for r in actions.get_json()["results"]] == [
        "create",
        "promote",
        "query",
        "read",
        "train",
    ]
    resources = client.post(
        "/access/v1/search/resource",
        json={
            "subject": {"type": "user", "id": "taxbot"},
            "action": {"name": "query"},
            "resource": {"type": "model"},
        },
        headers=auth(gateway),
    )
    assert resources.status_code == 200, resources.get_json()
    found = resources.get_json()["results"]
    assert {
        "type": "model",
        "id": "tax-assistant",
        "properties": {"domain": "consumer-tax"},
    } in found
    # Only the domains the caller may ask about are searched (tax-gateway: consumer-tax).
    assert {r["properties"]["domain"] for r in found} == {"consumer-tax"}
    datasets = client.post(
        "/access/v1/search/resource",
        json={
            "subject": {"type": "user", "id": "sam"},
            "action": {"name": "read"},
            "resource": {"type": "dataset", "properties": {"domain": "smb-accounting"}},
        },
        headers=auth(gateway),
    )
    assert datasets.status_code == 403  # the caller may not ask about smb-accounting


def test_the_search_interop_scenarios_requests_get_valid_answers(client, gateway):
    """The AuthZEN search interop's requests (records 101-120, actions view/edit/delete):
    this PDP holds no records, so each is a valid empty answer, never an error."""
    subject_search = {
        "subject": {"type": "user"},
        "action": {"name": "view"},
        "resource": {"type": "record", "id": "101"},
    }
    resource_search = {
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "edit"},
        "resource": {"type": "record"},
    }
    action_search = {
        "subject": {"type": "user", "id": "alice"},
        "resource": {"type": "record", "id": "101"},
    }
    for path, body in (
        ("/access/v1/search/subject", subject_search),
        ("/access/v1/search/resource", resource_search),
        ("/access/v1/search/action", action_search),
    ):
        answer = client.post(path, json=body, headers=auth(gateway))
        assert answer.status_code == 200, (path, answer.get_json())
        assert answer.get_json()["results"] == [], path
        assert answer.get_json()["page"] == {"next_token": "", "count": 0, "total": 0}
    # A caller that may ask about no domain at all is refused, not answered.
    stranger = principal_token(client.application, "nobody-at-all")
    refused = client.post("/access/v1/search/subject", json=subject_search, headers=auth(stranger))
    assert refused.status_code == 403
