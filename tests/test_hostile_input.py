"""Hostile input is a 4xx that names the line or field, never a 500, and changes nothing."""

from __future__ import annotations

import json
import random
import re

import pytest
import sqlalchemy as sa

from governance.app import at_most
from governance.datasets.models import DatasetVersion
from governance.db import get_db
from tests.factories import auth, create_dataset, make_domain, principal_token

NDJSON = "application/x-ndjson"


@pytest.fixture
def world(app, client):
    make_domain(app, "consumer-tax")
    tokens = {name: principal_token(app, name) for name in ("admin", "casey", "audrey")}
    tokens["dataset"] = create_dataset(client, tokens["casey"], "consumer-tax", "returns")
    return tokens


def upload(client, world, body: bytes, content_type: str | None = NDJSON):
    extra = {"content_type": content_type} if content_type else {}
    return client.post(
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": 2025},
        data=body,
        headers=auth(world["casey"]),
        **extra,
    )


def versions(app) -> int:
    with get_db(app).unit_of_work() as session:
        return session.execute(sa.select(sa.func.count()).select_from(DatasetVersion)).scalar()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"text": "\\ud800 is not text"}', "lone surrogate"),
        (b'{"text": "a", "metadata": {"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}", "nested"),
        (b'{"text": "a", "metadata": {"n": ' + b"9" * 5000 + b"}}", "beyond 64 bits"),
        (b'{"text": "a", "metadata": {"n": NaN}}', "NaN is not a JSON number"),
        (b'{"text": "a", "text": "b"}', "appears twice"),
    ],
    ids=["surrogate", "deep", "huge-int", "nan", "duplicate-key"],
)
def test_hostile_records_are_refused_by_line(app, client, world, line, reason):
    good = b'{"text": "Schedule C line 1"}\n'
    response = upload(client, world, good + line + b"\n")
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["details"]["line"] == 2 and reason in error["message"]
    assert versions(app) == 0


def test_uploads_need_a_json_lines_content_type(app, client, world):
    body = b'{"text": "Schedule C line 1"}\n'
    for content_type in (None, "text/csv", "multipart/form-data; boundary=x"):
        response = upload(client, world, body, content_type)
        assert response.status_code == 415, content_type
        assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert versions(app) == 0
    assert upload(client, world, body).status_code == 201


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"name": "x", "jurisdiction": "US", "retention_days": NaN}', "NaN"),
        (b'{"name": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}", "nested"),
        (b'{"name": "x", "retention_days": ' + b"7" * 5000 + b"}", "beyond 64 bits"),
        (b'{"name": "x", "name": "y"}', "appears twice"),
        (b'{"name": "\\udfff"}', "lone surrogate"),
    ],
    ids=["nan", "deep", "huge-int", "duplicate-key", "surrogate"],
)
def test_hostile_json_bodies_are_refused(client, world, raw, reason):
    response = client.post(
        "/api/v1/domains", data=raw, content_type="application/json", headers=auth(world["admin"])
    )
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "refused_json" and reason in error["message"]


def test_integers_beyond_64_bits_in_paths_queries_and_bodies(client, world):
    huge = "99999999999999999999"
    path = client.get(f"/api/v1/datasets/{huge}/versions", headers=auth(world["casey"]))
    assert path.status_code == 404
    query = client.get(
        "/api/v1/audit/entries", query_string={"after_seq": huge}, headers=auth(world["audrey"])
    )
    assert query.status_code == 422
    assert query.get_json()["error"]["details"][0]["field"] == "after_seq"
    # A query number beyond the 64-bit columns it is compared with (schemathesis found it).
    proof = client.get(
        "/api/v1/audit/entries/1/proof",
        query_string={"tree_size": 22546978436223401459712},
        headers=auth(world["admin"]),
    )
    assert proof.status_code == 422, proof.get_json()
    body = client.post(
        "/api/v1/approvals/dataset-use",
        data=json.dumps({"dataset_id": 1, "version": 1, "family": "f"}).replace(
            '"version": 1', f'"version": {huge}'
        ),
        content_type="application/json",
        headers=auth(world["casey"]),
    )
    assert body.status_code == 400 and "beyond 64 bits" in body.get_json()["error"]["message"]
    bounded = client.post(
        "/api/v1/approvals/dataset-use",
        json={"dataset_id": 2**63, "version": 1, "family": "f"},
        headers=auth(world["casey"]),
    )
    assert bounded.status_code in (400, 422)


def test_domains_come_from_the_policy_files(client, world):
    undeclared = client.post(
        "/api/v1/domains",
        json={"name": "payroll", "jurisdiction": "US", "retention_days": 365},
        headers=auth(world["admin"]),
    )
    assert undeclared.status_code == 422
    error = undeclared.get_json()["error"]
    assert error["code"] == "undeclared_domain" and error["details"][0]["field"] == "name"


def test_job_routes_check_the_token_before_reading_the_body(client, world):
    path = f"/api/v1/jobs/{'a' * 32}/heartbeat"
    malformed = client.post(
        path, data=b"{not json", content_type="application/json", headers=auth("job_bad.x")
    )
    assert malformed.status_code == 401


def test_nul_characters_are_refused_where_they_are_named(app, client, world):
    query = client.get(
        "/api/v1/audit/entries",
        query_string={"principal": "ca\x00sey"},
        headers=auth(world["audrey"]),
    )
    assert query.status_code == 422
    assert query.get_json()["error"]["details"][0]["field"] == "principal"
    path = client.get("/api/v1/domains/consumer%00tax", headers=auth(world["admin"]))
    assert path.status_code == 422
    assert path.get_json()["error"]["details"][0]["field"] == "path"
    body = client.post(
        "/api/v1/domains",
        data=b'{"name": "pay\\u0000roll", "jurisdiction": "US"}',
        content_type="application/json",
        headers=auth(world["admin"]),
    )
    assert body.status_code == 400
    assert body.get_json()["error"]["details"]["field"] == "name"
    record = upload(client, world, b'{"text": "a", "metadata": {"note": "x\\u0000y"}}\n')
    assert record.status_code == 422 and record.get_json()["error"]["details"]["line"] == 1
    # The audit log still takes entries after all of them.
    assert client.get("/api/v1/domains", headers=auth(world["admin"])).status_code == 200


@pytest.mark.parametrize("limit", [0, 7, 10, 99, 305, 1000, 2**31 - 1, 2**63 - 1])
def test_the_route_pattern_for_ids_stops_exactly_at_the_limit(limit):
    pattern = re.compile(at_most(limit) + r"\Z")
    rng = random.Random(limit)
    numbers = {*range(min(limit + 30, 3000)), limit, limit + 1, limit * 10 + 9}
    numbers |= {rng.randrange(limit * 3 + 2) for _ in range(2000)}
    for number in numbers:
        assert bool(pattern.match(str(number))) == (number <= limit), number


def test_numbers_beyond_a_double_are_refused(app, client, world):
    response = upload(client, world, b'{"text": "a", "metadata": {"x": 1e999}}\n')
    assert response.status_code == 422, response.get_json()
    assert "beyond a 64-bit float" in response.get_json()["error"]["message"]
    assert versions(app) == 0


def test_ids_beyond_the_columns_are_not_found(client, world):
    for value in (2**31, 2**63 - 1, 10**40):
        response = client.get(f"/api/v1/datasets/{value}", headers=auth(world["casey"]))
        assert response.status_code == 404, (value, response.get_json())
        # Where another method's route shares the path, still 404 (not 405).
        for method, path in (
            ("DELETE", f"/api/v1/datasets/1/versions/{value}"),
            ("GET", f"/api/v1/datasets/{value}/versions/1/scans"),
            ("POST", f"/api/v1/datasets/{value}/versions"),
        ):
            answer = client.open(path, method=method, headers=auth(world["casey"]))
            assert answer.status_code == 404, (method, path, answer.get_json())
    # A query number beyond the 64-bit columns it is compared with (schemathesis found it).
    proof = client.get(
        "/api/v1/audit/entries/1/proof",
        query_string={"tree_size": 22546978436223401459712},
        headers=auth(world["admin"]),
    )
    assert proof.status_code == 422, proof.get_json()
    body = client.post(
        "/api/v1/approvals/dataset-use",
        json={"dataset_id": 2**31, "version": 1, "family": "f"},
        headers=auth(world["casey"]),
    )
    assert body.status_code == 422


@pytest.mark.parametrize("given", ["2026-01-01", "2026-01-01T00:00:00"])
def test_times_without_a_zone_are_taken_as_utc(client, world, given):
    response = client.get(
        "/api/v1/audit/entries", query_string={"from": given}, headers=auth(world["audrey"])
    )
    assert response.status_code == 200, response.get_json()


def test_options_and_wrong_methods_answer_with_allow(client, world):
    options = client.options("/api/v1/domains", headers=auth(world["admin"]))
    assert options.status_code == 200 and "GET" in options.headers["Allow"]
    wrong = client.put("/api/v1/domains", json={}, headers=auth(world["admin"]))
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]
    assert wrong.get_json()["error"]["code"] == "method_not_allowed"


def test_numbers_are_not_times_and_integers_are_not_booleans(client, world):
    numeric = client.get(
        "/api/v1/audit/entries", query_string={"to": "0.5"}, headers=auth(world["audrey"])
    )
    assert numeric.status_code == 422
    assert numeric.get_json()["error"]["details"][0]["field"] == "to"
    token = client.post(
        "/api/v1/principals/casey/tokens",
        json={"never_expires": 0},
        headers=auth(world["admin"]),
    )
    assert token.status_code == 422, token.get_json()
    assert "never_expires" in token.get_json()["error"]["details"][0]["field"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/jobs/claim", "/api/v1/approvals/dataset-use", "/api/v1/approvals/base-model-use"],
)
def test_allow_names_only_what_the_path_takes(client, world, path):
    """A POST-only path beside `/{uid}` is not read as a uid: GET is not advertised there."""
    options = client.options(path, headers=auth(world["admin"]))
    assert set(options.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    wrong = client.get(path, headers=auth(world["admin"]))
    assert wrong.status_code == 405, wrong.get_json()
