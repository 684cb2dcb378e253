"""Deleting a version erases every copy of what was derived from its records: a test plants
made-up values, scans (so receipts, samples, the quarantine and job results hold redacted
text) and exports the audit log and an evidence pack, deletes the version and searches the
database, the instance directory (archives opened) and the logs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import string
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from governance import runtime
from governance.db import get_db
from governance.pii.scanner import Scanner
from tests.factories import auth, create_dataset, make_domain, principal_token, run_jobs


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def made_up(rng: random.Random) -> str:
    """A word in no dictionary and no name list: the scanner does not redact it."""
    return "qx" + "".join(rng.choice(string.ascii_lowercase) for _ in range(9))


def hashed_forms(value: str) -> set[str]:
    data = value.encode()
    return {hashlib.sha256(data).hexdigest(), hashlib.sha1(data).hexdigest()} | {  # noqa: S324
        hashlib.md5(data).hexdigest()  # noqa: S324
    }


def database_text(app) -> str:
    """Every row of every table, as text (JSON columns and bytes included)."""
    out = []
    with get_db(app).unit_of_work() as session:
        for table in SQLModel.metadata.sorted_tables:
            for row in session.execute(sa.select(table)).all():
                for value in row:
                    if isinstance(value, bytes):
                        out.append(value.decode("latin-1"))
                    elif isinstance(value, dict | list):
                        out.append(json.dumps(value, ensure_ascii=False))
                    else:
                        out.append(str(value))
    return "\n".join(out)


def instance_files(app) -> dict[str, str]:
    """Every file of the instance directory as text, and every member of its tar archives
    (exports and evidence packs are gzipped tars: their compressed bytes would hide text)."""
    root = Path(app.config["GOVERNANCE_HOME"])
    found = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        found[str(path)] = path.read_bytes().decode("latin-1")
        if path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if member.isfile():
                        data = archive.extractfile(member).read()  # type: ignore[union-attr]
                        found[f"{path}!{member.name}"] = data.decode("latin-1")
    return found


def export_everything(app, client, token: str) -> list[str]:
    """An audit export in each format and an evidence pack of this year, written as jobs to
    files under the instance directory; their names."""
    year = dt.datetime.now(dt.UTC).year
    started = [
        client.post("/api/v1/audit/exports", query_string={"format": f}, headers=auth(token))
        for f in ("csv", "jsonl", "bundle")
    ]
    started.append(
        client.post(
            "/api/v1/audit/evidence-packs",
            query_string={"period": f"{year}-01-01..{year}-12-31"},
            headers=auth(token),
        )
    )
    assert all(r.status_code == 202 for r in started), [r.get_json() for r in started]
    assert run_jobs(app) == len(started)
    names = []
    for response in started:
        job = client.get(response.get_json()["location"], headers=auth(token)).get_json()
        assert job["state"] == "succeeded", job
        names.append(job["job"])
    return names


def test_a_deleted_version_leaves_no_plain_or_hashed_trace(app, client, scanner, caplog):
    caplog.set_level(logging.DEBUG)
    rng = random.Random()
    pet, street_word, note = made_up(rng), made_up(rng), made_up(rng)
    planted = [pet, street_word, note]
    records = [
        # A five-digit reference the scanner leaves and the residual pass holds: quarantined,
        # so its preview (redacted text) is stored.
        {"text": f"Ref 4821{rng.randint(0, 9)} about the {pet}, see you at the {street_word}."},
        {"text": f"My SSN is 536-22-8741 and the note says {note}."},
        {"text": "How does Schedule C line 1 work?"},
    ]
    runtime.of(app).use(scanner=scanner)
    make_domain(app, "consumer-tax")
    casey = principal_token(app, "casey")
    dataset = create_dataset(client, casey, "consumer-tax", "returns")
    base = f"/api/v1/datasets/{dataset}/versions"
    uploaded = client.post(
        base,
        query_string={"tax_year": 2025},
        data=b"".join(json.dumps(r).encode() + b"\n" for r in records),
        content_type="application/x-ndjson",
        headers=auth(casey),
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    job = client.post(f"{base}/1/scans", headers=auth(casey)).get_json()
    assert run_jobs(app) == 1
    done = client.get(job["location"], headers=auth(casey)).get_json()
    assert done["state"] == "succeeded", done
    held = client.get(f"{base}/1/quarantine", headers=auth(casey)).get_json()["items"]
    # Before deletion the derived copies exist (else this test could not fail).
    stored = database_text(app)
    assert held and any(value in stored for value in planted)

    # Exports written before the deletion are copies too; they must hold nothing of the text.
    exports = export_everything(app, client, principal_token(app, "admin"))
    written = instance_files(app)
    assert all(any(uid in name for name in written) for uid in exports)
    assert any("!" in name for name in written)  # the archives were opened

    deleted = client.delete(f"{base}/1", json={"reason": "customer asked"}, headers=auth(casey))
    assert deleted.status_code == 200, deleted.get_json()

    stored, files = database_text(app), instance_files(app)
    logs = caplog.text
    for value in planted:
        for form in {value, value.lower(), *hashed_forms(value)}:
            assert form not in stored, f"{form} in the database"
            assert not [p for p, text in files.items() if form in text], form
            assert form not in logs, f"{form} in the logs"
    for path in (f"{base}/1/quarantine", f"{base}/1/scans", f"{base}/1/labels"):
        answer = client.get(path, headers=auth(casey))
        assert answer.status_code == 410, (path, answer.get_json())
        assert answer.get_json()["error"]["code"] == "gone"
    result = client.get(job["location"], headers=auth(casey)).get_json()
    assert set(result["result"]) == {"erased"}
