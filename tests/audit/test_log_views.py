"""The audit log over HTTP and in exports: what goes in, who may read it, proofs, bundles
that verify offline, and reports."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from audit import merkle
from audit.log import ENTRY_FIELDS, canonical, key_id, load_public_key
from tests.factories import auth, make_domain, principal_token


@pytest.fixture
def world(app, client):
    """Two domains, an auditor, a steward, some allowed and denied calls."""
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    tokens = {name: principal_token(app, name) for name in ("admin", "casey", "audrey", "sam")}
    client.get("/api/v1/domains/consumer-tax", headers=auth(tokens["casey"]))  # allow
    client.get("/api/v1/domains/smb-accounting", headers=auth(tokens["casey"]))  # deny
    client.get("/api/v1/domains/smb-accounting", headers=auth(tokens["sam"]))  # allow
    client.get("/api/v1/domains")  # anonymous: denied at authentication
    return tokens


def entries(client, token, **params):
    response = client.get("/api/v1/audit/entries", query_string=params, headers=auth(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_decisions_allowed_and_denied_are_logged(client, world):
    items = entries(client, world["audrey"], limit=1000)["items"]
    reads = [(e["principal"], e["domain"], e["decision"]) for e in items if e["action"] == "read"]
    assert ("casey", "consumer-tax", "allow") in reads
    assert ("casey", "smb-accounting", "deny") in reads
    anonymous = [e for e in items if e["principal"] == "anonymous"]
    assert anonymous and anonymous[0]["decision"] == "deny"
    assert any(e["action"] == "policy.load" for e in items)
    for e in items:
        assert set(e) >= set(ENTRY_FIELDS)


def test_filters_and_pagination(client, world):
    denied = entries(client, world["audrey"], decision="deny", principal="casey")["items"]
    assert [(e["principal"], e["decision"]) for e in denied] == [("casey", "deny")]
    first = entries(client, world["audrey"], limit=2)
    assert len(first["items"]) == 2 and first["next_after_seq"] == first["items"][-1]["seq"]
    second = entries(client, world["audrey"], limit=2, after_seq=first["next_after_seq"])
    assert second["items"][0]["seq"] > first["items"][-1]["seq"]
    in_domain = entries(client, world["audrey"], domain="smb-accounting")["items"]
    assert in_domain and all(e["domain"] == "smb-accounting" for e in in_domain)


def test_who_may_read_the_log(client, world):
    assert client.get("/api/v1/audit/entries", headers=auth(world["casey"])).status_code == 403
    bad = client.get(
        "/api/v1/audit/entries", query_string={"decision": "maybe"}, headers=auth(world["audrey"])
    )
    assert bad.status_code == 422
    assert bad.get_json()["error"]["details"][0]["field"] == "decision"


def test_inclusion_and_consistency_proofs_verify(client, world):
    token = auth(world["audrey"])
    first = client.post("/api/v1/audit/checkpoints", headers=token)
    assert first.status_code == 201
    old = first.get_json()
    client.get("/api/v1/domains/consumer-tax", headers=auth(world["casey"]))
    new = client.post("/api/v1/audit/checkpoints", headers=token).get_json()
    assert new["tree_size"] > old["tree_size"]
    latest = client.get("/api/v1/audit/checkpoints/latest", headers=token).get_json()
    assert latest["tree_size"] >= new["tree_size"]

    proof = client.get(
        "/api/v1/audit/entries/2/proof", query_string={"tree_size": new["tree_size"]}, headers=token
    ).get_json()
    assert merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        1,
        new["tree_size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(new["root"]),
    )
    consistency = client.get(
        "/api/v1/audit/consistency",
        query_string={"old_size": old["tree_size"], "new_size": new["tree_size"]},
        headers=token,
    ).get_json()
    assert consistency["old_root"] == old["root"] and consistency["new_root"] == new["root"]
    assert merkle.verify_consistency(
        old["tree_size"],
        new["tree_size"],
        bytes.fromhex(old["root"]),
        bytes.fromhex(new["root"]),
        [bytes.fromhex(h) for h in consistency["proof"]],
    )
    missing = client.get("/api/v1/audit/entries/999999/proof", headers=token)
    assert missing.status_code == 404


def test_decision_api(client, world, app):
    gateway = principal_token(app, "tax-gateway")  # decision-client in consumer-tax
    asked = client.post(
        "/api/v1/authorize",
        json={
            "subject": "taxbot",
            "domain": "consumer-tax",
            "object": "model/tax-assistant",
            "action": "query",
        },
        headers=auth(gateway),
    )
    assert asked.status_code == 200
    body = asked.get_json()
    assert body["allowed"] is True and body["rule"][0] == "model-consumer"
    denied = client.post(
        "/api/v1/authorize",
        json={
            "subject": "casey",
            "domain": "consumer-tax",
            "object": "model/tax-assistant",
            "action": "query",
        },
        headers=auth(gateway),
    ).get_json()
    assert denied["decision"] == "deny" and denied["rule"] is None
    logged = entries(client, world["audrey"], principal="casey", action="query")["items"]
    assert logged[-1]["seq"] == denied["audit_seq"]
    assert logged[-1]["details"]["asked_by"] == "tax-gateway"
    # Asking about a domain the caller has no decision rights in is itself denied.
    other = client.post(
        "/api/v1/authorize",
        json={"subject": "sam", "domain": "smb-accounting", "object": "dataset", "action": "read"},
        headers=auth(gateway),
    )
    assert other.status_code == 403
    unknown = client.post("/api/v1/authorize", json={"subject": "x"}, headers=auth(gateway))
    assert unknown.status_code == 422


def verify_offline(path, *extra, env=None):
    # Tests about the log's contents accept the bundle's key explicitly; pinning has its own.
    trust = [] if "--public-key" in extra or env else ["--trust-bundle-key"]
    return subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(path), *trust, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bundle_download_verifies_offline_and_a_flipped_byte_is_caught(client, world, tmp_path):
    response = client.get(
        "/api/v1/audit/export", query_string={"format": "bundle"}, headers=auth(world["audrey"])
    )
    assert response.status_code == 200
    archive = tmp_path / "bundle.tar.gz"
    archive.write_bytes(response.data)
    result = verify_offline(archive)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["verified"] is True

    directory = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    public_key = directory / "public_key.pem"
    assert verify_offline(directory, "--public-key", str(public_key)).returncode == 0
    entries_file = directory / "entries.jsonl"
    lines = entries_file.read_bytes().splitlines(keepends=True)
    target = lines[2]
    position = target.index(b'"principal":"') + len(b'"principal":"')
    lines[2] = target[:position] + bytes([target[position] ^ 0x01]) + target[position + 1 :]
    entries_file.write_bytes(b"".join(lines))
    failed = verify_offline(directory)
    assert failed.returncode == 1
    assert "entry 3 " in failed.stderr and "altered" in failed.stderr


def test_filtered_bundle_and_a_changed_checkpoint(client, world, tmp_path):
    response = client.get(
        "/api/v1/audit/export",
        query_string={"format": "bundle", "principal": "casey"},
        headers=auth(world["audrey"]),
    )
    directory = tmp_path / "b"
    with tarfile.open(fileobj=io.BytesIO(response.data)) as tar:
        tar.extractall(directory, filter="data")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["entries"] >= 2
    assert (directory / "leaves.txt").exists()
    assert verify_offline(directory).returncode == 0
    checkpoints = directory / "checkpoints.jsonl"
    first = json.loads(checkpoints.read_text().splitlines()[-1])
    first["root"] = "11" * 32
    checkpoints.write_text(json.dumps(first) + "\n")
    failed = verify_offline(directory)
    assert failed.returncode == 1 and "bad signature" in failed.stderr


def test_csv_and_jsonl_exports(client, world):
    token = auth(world["audrey"])
    as_csv = client.get("/api/v1/audit/export", query_string={"format": "csv"}, headers=token)
    header, *rows = as_csv.get_data(as_text=True).splitlines()
    assert header.startswith("seq,time,principal") and rows
    as_jsonl = client.get("/api/v1/audit/export", query_string={"format": "jsonl"}, headers=token)
    decoded = [json.loads(line) for line in as_jsonl.get_data(as_text=True).splitlines()]
    assert [d["seq"] for d in decoded] == sorted(d["seq"] for d in decoded)


def test_access_reports_are_signed_and_logged(client, world, app):
    from governance import runtime
    from governance.audit.service import AuditEvent

    runtime.of(app).audit_log.append_many(
        [
            AuditEvent("taxbot", "query", "model/tax-assistant", "consumer-tax", "allow"),
            AuditEvent("taxbot", "query", "model/tax-assistant", "consumer-tax", "allow"),
            AuditEvent("casey", "query", "model/tax-assistant", "consumer-tax", "deny"),
        ]
    )
    token = auth(world["audrey"])
    may = client.get("/api/v1/audit/reports/who-may", headers=token).get_json()
    rows = may["report"]["rows"]
    assert {"principal": "taxbot", "domain": "consumer-tax", "model": "*"}.items() <= next(
        r for r in rows if r["principal"] == "taxbot"
    ).items()
    assert not any(r["principal"] == "taxbot" and r["domain"] == "smb-accounting" for r in rows)
    public = load_public_key(
        (Path(app.config["GOVERNANCE_HOME"]) / "keys" / "signing.pub").read_bytes()
    )
    assert may["signature"]["key_id"] == key_id(public)
    from audit.log import canonical
    from governance.flows.access_reports import REPORT_CONTEXT

    public.verify(
        base64.b64decode(may["signature"]["value"]), REPORT_CONTEXT + canonical(may["report"])
    )

    did = client.get("/api/v1/audit/reports/who-did", headers=token).get_json()["report"]["rows"]
    by_who = {r["principal"]: r for r in did}
    assert by_who["taxbot"]["queries"] == 2 and by_who["casey"]["denied"] == 1
    as_csv = client.get(
        "/api/v1/audit/reports/who-did", query_string={"format": "csv"}, headers=token
    )
    public.verify(
        base64.b64decode(as_csv.headers["X-Signature-Ed25519"]), REPORT_CONTEXT + as_csv.data
    )
    logged = entries(client, world["audrey"], action="report.who-did")["items"]
    assert len(logged) == 2


def test_every_root_recomputes_from_the_api_alone(client, world):
    """An auditor with the all-domains permission lists every entry of the tree through the
    API, entries about objects that do not exist included (logged under `unknown`), rebuilds
    each leaf from the entry's fields and the root from the leaves, and gets the signed
    checkpoint's root; such an entry's inclusion proof is served too."""
    admin = auth(world["admin"])
    # Decisions about objects nobody has: no data domain owns them.
    assert client.get("/api/v1/datasets/4242", headers=admin).status_code == 404
    missing = client.post(
        "/v1/chat/completions",
        json={"model": "no-such-family", "messages": [{"role": "user", "content": "hi"}]},
        headers=admin,
    )
    assert missing.status_code == 404
    checkpoint = client.post("/api/v1/audit/checkpoints", headers=admin).get_json()
    size = checkpoint["tree_size"]
    listed, after = [], 0
    while len(listed) < size:
        page = entries(client, world["admin"], after_seq=after, limit=500)
        listed += [e for e in page["items"] if e["seq"] <= size]
        if page["next_after_seq"] is None:
            break
        after = page["next_after_seq"]
    assert [e["seq"] for e in listed] == list(range(1, size + 1))
    tree = merkle.CompactRange()
    for entry in listed:
        leaf = merkle.leaf_hash(canonical({k: entry[k] for k in ENTRY_FIELDS}))
        assert leaf.hex() == entry["leaf_hash"], entry["seq"]
        tree.append(leaf)
    assert tree.root().hex() == checkpoint["root"]
    unscoped = [e for e in listed if e["domain"] == "unknown"]
    assert unscoped, "the decisions about missing objects were not listed"
    proof = client.get(f"/api/v1/audit/entries/{unscoped[0]['seq']}/proof", headers=admin)
    assert proof.status_code == 200, proof.get_json()
    # An auditor bound to each domain by name, not to every domain, does not see them.
    own = entries(client, world["audrey"], limit=500)
    assert own["items"] and all(e["domain"] != "unknown" for e in own["items"])
