"""Dataset versions over HTTP: streamed, validated, encrypted, content-hashed, segregated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit import merkle
from audit.log import canonical
from governance import runtime
from governance.datasets import service
from governance.datasets.models import DatasetVersion
from governance.db import get_db
from governance.domains.models import Domain
from governance.errors import Conflict, Forbidden
from tests.factories import auth, create_dataset, make_domain, principal_token, row_count

CANARY = "CANARY-7f3a9c-do-not-store-in-plaintext"
RECORDS = [
    {"text": f"Form 1040 line 1a: wages of $52,000 for tax year 2025. {CANARY}"},
    {
        "prompt": "Can I deduct home office costs?",
        "completion": "Use Form 8829 if ...",
        "metadata": {"source": "faq"},
    },
    {"text": "Schedule C line 31 shows the net profit."},
]


def jsonl(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.fixture
def world(app, client):
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    tokens = {n: principal_token(app, n) for n in ("casey", "sam", "audrey", "priya")}
    tokens["dataset_id"] = create_dataset(
        client, tokens["casey"], "consumer-tax", "returns", description="1040 Q&A"
    )
    return tokens


def upload(client, world, body: bytes, tax_year=2025, who="casey"):
    return client.post(
        f"/api/v1/datasets/{world['dataset_id']}/versions",
        query_string={"tax_year": tax_year},
        data=body,
        content_type="application/x-ndjson",
        headers=auth(world[who]),
    )


def staged_files(app) -> list[Path]:
    root = Path(app.config["GOVERNANCE_HOME"]) / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_upload_is_hashed_encrypted_and_reads_back(app, client, world):
    response = upload(client, world, jsonl(RECORDS))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    expected_root = merkle.root([merkle.leaf_hash(canonical(r)) for r in RECORDS])
    assert body["content_hash"] == expected_root.hex()
    assert (body["version"], body["tax_year"], body["record_count"]) == (1, 2025, 3)
    second = upload(client, world, jsonl(RECORDS[:1]), tax_year=2026)
    assert second.get_json()["version"] == 2
    with get_db(app).unit_of_work() as session:
        version = session.exec(
            sa.select(DatasetVersion).where(DatasetVersion.number == 1)
        ).scalar_one()
        records = list(
            service.iter_version_records(
                session, runtime.of(app).keyring, runtime.of(app).store, version
            )
        )
    assert records == RECORDS
    listed = client.get(
        f"/api/v1/datasets/{world['dataset_id']}/versions", headers=auth(world["priya"])
    ).get_json()["items"]
    assert [v["version"] for v in listed] == [1, 2]


def test_no_record_reaches_disk_or_database_in_plaintext(app, client, world, config):
    assert upload(client, world, jsonl(RECORDS)).status_code == 201
    needle = CANARY.encode()
    home = Path(config["GOVERNANCE_HOME"])
    for path in home.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), f"canary found in {path}"
    # The database, whichever it is: every column of every row, as text.
    engine = get_db(app).engine
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                assert CANARY not in repr(tuple(row)), f"canary found in table {table}"


@pytest.mark.parametrize(
    ("body", "line", "status"),
    [
        (b'{"text": "fine"}\n{"text": "fine"}\n{"text": oops}\n', 3, 422),
        (b'{"text": "fine"}\n{"prompt": "only a prompt"}\n', 2, 422),
        (b'{"text": "fine"}\n{"text": "x", "ssn": "123"}\n', 2, 422),
        (b'{"text": "caf\xe9"}\n', 1, 422),
        (b'["not", "an", "object"]\n', 1, 422),
        (b'{"text": "   "}\n', 1, 422),
        (b"", 0, 422),
        (b"\n\n", 0, 422),
    ],
)
def test_bad_uploads_name_the_line_and_store_nothing(app, client, world, body, line, status):
    response = upload(client, world, body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["details"]["line"] == line
    assert row_count(app, "dataset_versions") == 0
    assert staged_files(app) == []


def test_oversize_record_and_upload_are_413(app, client, world):
    app.config["RECORD_MAX_BYTES"] = 100
    big = jsonl([{"text": "x" * 50}, {"text": "y" * 200}])
    response = upload(client, world, big)
    assert response.status_code == 413
    assert response.get_json()["error"]["details"]["line"] == 2
    app.config["RECORD_MAX_BYTES"] = 1 << 20
    app.config["UPLOAD_MAX_BYTES"] = 1000
    response = upload(client, world, jsonl([{"text": "z" * 80}] * 20))
    assert response.status_code == 413
    assert row_count(app, "dataset_versions") == 0
    assert staged_files(app) == []


def test_roles_in_one_domain_give_nothing_in_another(app, client, world):
    # sam is the smb-accounting steward: the consumer-tax dataset does not exist for him.
    assert upload(client, world, jsonl(RECORDS), who="sam").status_code == 404
    assert (
        client.get(
            f"/api/v1/datasets/{world['dataset_id']}", headers=auth(world["sam"])
        ).status_code
        == 404
    )
    assert (
        client.get("/api/v1/domains/consumer-tax/datasets", headers=auth(world["sam"])).status_code
        == 403
    )
    assert (
        client.post(
            "/api/v1/domains/smb-accounting/datasets",
            json={"name": "books"},
            headers=auth(world["casey"]),
        ).status_code
        == 403
    )
    # A privacy reviewer may read but not upload or delete.
    assert upload(client, world, jsonl(RECORDS), who="priya").status_code == 404
    assert row_count(app, "dataset_versions") == 0


def test_a_version_cannot_cross_domains_in_the_service(app, client, world):
    upload(client, world, jsonl(RECORDS))
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        smb = session.exec(sa.select(Domain).where(Domain.name == "smb-accounting")).scalar_one()
        own = session.exec(sa.select(Domain).where(Domain.name == "consumer-tax")).scalar_one()
        service.ensure_same_domain(version, own)
        with pytest.raises(Forbidden, match="another domain"):
            service.ensure_same_domain(version, smb)


def test_delete_shreds_key_and_blob_and_keeps_a_tombstone(app, client, world):
    upload(client, world, jsonl(RECORDS))
    assert len(staged_files(app)) == 1
    url = f"/api/v1/datasets/{world['dataset_id']}/versions/1"
    assert client.delete(url, json={"reason": "x"}, headers=auth(world["casey"])).status_code == 422
    assert (
        client.delete(
            url, json={"reason": "withdrawn by the client"}, headers=auth(world["priya"])
        ).status_code
        == 404
    )
    deleted = client.delete(
        url, json={"reason": "withdrawn by the client"}, headers=auth(world["casey"])
    )
    assert deleted.status_code == 200
    tomb = deleted.get_json()
    assert tomb["status"] == "deleted" and tomb["deleted_by"] == "casey"
    assert tomb["delete_reason"] == "withdrawn by the client"
    assert staged_files(app) == []
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        assert version.wrapped_key is None and version.blob_key is None
        with pytest.raises(Conflict):
            list(
                service.iter_version_records(
                    session, runtime.of(app).keyring, runtime.of(app).store, version
                )
            )
    again = client.delete(
        url, json={"reason": "withdrawn by the client"}, headers=auth(world["casey"])
    )
    assert again.status_code == 409
