"""Exports of the audit log as jobs: the file belongs to its requester and verifies offline."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.factories import auth, finished_job, make_domain, principal_token


def test_an_export_job_writes_a_file_only_its_requester_downloads(app, client, tmp_path):
    make_domain(app, "consumer-tax")
    audrey = principal_token(app, "audrey")  # the auditor of the example policy
    admin = principal_token(app, "admin")
    for _ in range(3):
        client.get("/api/v1/domains/consumer-tax", headers=auth(admin))
    started = client.post(
        "/api/v1/audit/exports", query_string={"format": "jsonl"}, headers=auth(audrey)
    )
    job = finished_job(app, client, started, auth(audrey))
    assert job["state"] == "succeeded" and job["kind"] == "export"
    assert job["result"]["entries"] > 3 and job["progress"]["entries"] == job["result"]["entries"]
    with client.get(job["result"]["download"], headers=auth(audrey)) as download:
        assert download.status_code == 200
        lines = download.get_data(as_text=True).splitlines()
    assert len(lines) == job["result"]["entries"]
    assert all(json.loads(line)["seq"] for line in lines)
    # Someone else, even an administrator, is told there is no such job.
    assert client.get(job["location"], headers=auth(admin)).status_code == 404
    assert client.get(job["result"]["download"], headers=auth(admin)).status_code == 404


def test_a_bundle_export_job_verifies_offline(app, client, tmp_path):
    audrey = principal_token(app, "audrey")
    started = client.post(
        "/api/v1/audit/exports", query_string={"format": "bundle"}, headers=auth(audrey)
    )
    job = finished_job(app, client, started, auth(audrey))
    assert job["state"] == "succeeded", job
    bundle = tmp_path / "bundle.tar.gz"
    with client.get(job["result"]["download"], headers=auth(audrey)) as download:
        bundle.write_bytes(download.data)
    verified = subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(bundle), "--trust-bundle-key"],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr


def test_an_export_is_refused_to_those_who_may_not_export(app, client):
    casey = principal_token(app, "casey")
    refused = client.post("/api/v1/audit/exports", headers=auth(casey))
    assert refused.status_code == 403
    bad = client.post("/api/v1/audit/exports", query_string={"format": "xml"}, headers=auth(casey))
    assert bad.status_code == 422
