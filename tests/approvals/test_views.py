"""Approval workflows through the API: states, separation of duties, signatures, races."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from governance import runtime
from governance.app import create_app
from governance.approvals import service
from governance.approvals.models import ApprovalDecision, ApprovalRequest
from governance.config import DEFAULT_POLICY_DIR
from governance.db import get_db, utcnow
from governance.pii.scanner import Scanner
from tests.factories import (
    auth,
    close_app,
    create_dataset,
    make_domain,
    make_family,
    principal_token,
    scan_receipt,
)

RECORDS = [
    {"text": "My SSN is 536-22-8741; can I e-file Form 1040 for tax year 2025?"},
    {"prompt": "Who can claim the child tax credit?", "completion": "See Schedule 8812."},
]
PEOPLE = ("casey", "priya", "lee", "morgan", "jordan", "sam", "pat", "admin")


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


@pytest.fixture
def policies(tmp_path) -> Path:
    """The shipped policy plus `pat`, who holds both reviewer roles in consumer-tax."""
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    with (target / "policy.csv").open("a") as handle:
        handle.write(
            "g, pat, privacy-reviewer, consumer-tax\ng, pat, legal-reviewer, consumer-tax\n"
        )
    return target


@pytest.fixture
def app(config, policies, scanner):
    application = create_app(
        {**config, "TESTING": True, "GOVERNANCE_POLICY_DIR": str(policies)},
        runtime_overrides={"scanner": scanner},
    )
    yield application
    close_app(application)


@pytest.fixture
def world(app, client):
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    tokens = {name: principal_token(app, name) for name in PEOPLE}
    tokens["dataset"] = create_dataset(client, tokens["casey"], "consumer-tax", "returns")
    make_family(app, "tax-assistant", "consumer-tax")
    upload(client, tokens)
    return tokens


def upload(client, world, year=2025) -> int:
    response = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": year},
        data=b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS),
        content_type="application/x-ndjson",
        headers=auth(world["casey"]),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["version"]


def scan(client, world, number=1):
    response = scan_receipt(
        client, f"/api/v1/datasets/{world['dataset']}/versions/{number}/scans", auth(world["casey"])
    )
    assert response.status_code == 200
    return response.get_json()


def request_use(client, world, who="morgan", number=1, family="tax-assistant"):
    return client.post(
        "/api/v1/approvals/dataset-use",
        json={"dataset_id": world["dataset"], "version": number, "family": family},
        headers=auth(world[who]),
    )


def decide(client, world, uid, who, decision="approve", **extra):
    return client.post(
        f"/api/v1/approvals/{uid}/decisions",
        json={"decision": decision, "comment": f"{who} looked at the receipt", **extra},
        headers=auth(world[who]),
    )


def show(client, world, uid, who="priya"):
    return client.get(f"/api/v1/approvals/{uid}", headers=auth(world[who]))


def inbox(client, world, who) -> list[str]:
    response = client.get("/api/v1/approvals/inbox", headers=auth(world[who]))
    assert response.status_code == 200
    return [item["uid"] for item in response.get_json()["items"]]


def test_data_use_needs_both_reviewers_and_each_decision_is_signed_and_audited(app, client, world):
    refused = request_use(client, world)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_scanned"
    scan(client, world)
    created = request_use(client, world)
    assert created.status_code == 201, created.get_json()
    request = created.get_json()
    uid = request["uid"]
    assert request["state"] == "pending"
    assert request["required_roles"] == ["privacy-reviewer", "legal-reviewer"]

    assert uid in inbox(client, world, "priya") and uid in inbox(client, world, "lee")
    for outsider in ("morgan", "casey", "jordan", "sam"):
        assert uid not in inbox(client, world, outsider)

    detail = show(client, world, uid).get_json()
    assert detail["evidence"]["counts"] == {"US_SSN": {"text": 1}}
    assert "536-22-8741" not in json.dumps(detail)
    assert "<US_SSN>" in json.dumps(detail["evidence"]["redacted_samples"])
    assert detail["policy_in_force"] == detail["policy_hash"]

    first = decide(client, world, uid, "priya")
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["role"] == "privacy-reviewer"
    after_one = show(client, world, uid).get_json()
    assert after_one["state"] == "pending" and after_one["missing_roles"] == ["legal-reviewer"]
    assert uid not in inbox(client, world, "priya")
    assert decide(client, world, uid, "lee").status_code == 201
    final = show(client, world, uid).get_json()
    assert final["state"] == "approved" and final["missing_roles"] == []
    assert [d["reviewer"] for d in final["decisions"]] == ["priya", "lee"]

    with get_db(app).unit_of_work() as session:
        row = session.exec(sa.select(ApprovalRequest)).scalar_one()
        key = runtime.of(app).audit_log.signing_key.public_key()
        assert service.verify_decisions(session, row, key) == []
        decision = session.exec(
            sa.select(ApprovalDecision).where(ApprovalDecision.reviewer == "lee")
        ).scalar_one()
        decision.comment = "approved without reading"
        session.add(decision)
        session.commit()
        assert service.verify_decisions(session, row, key) == [
            "decision by lee: the stored fields do not match its digest"
        ]
    entries = client.get(
        "/api/v1/audit/entries",
        query_string={"action": "approval.decide"},
        headers=auth(world["admin"]),
    ).get_json()["items"]
    assert {(e["principal"], e["decision"]) for e in entries} == {
        ("priya", "approve"),
        ("lee", "approve"),
    }
    assert all(e["policy_hash"] for e in entries)


def test_separation_of_duties(client, world):
    scan(client, world)
    uid = request_use(client, world).get_json()["uid"]
    own = decide(client, world, uid, "morgan")
    assert own.status_code == 403 and own.get_json()["error"]["code"] == "separation_of_duties"
    # jordan may decide approvals in consumer-tax, but holds no role this request needs.
    jordan = decide(client, world, uid, "jordan")
    assert (
        jordan.status_code == 403 and "none of the roles" in jordan.get_json()["error"]["message"]
    )
    # Another domain's steward cannot even see it.
    assert decide(client, world, uid, "sam").status_code == 404
    assert show(client, world, uid, "sam").status_code == 404
    # pat holds both roles: must pick one, and cannot then fill the other.
    ambiguous = decide(client, world, uid, "pat")
    assert ambiguous.status_code == 422 and ambiguous.get_json()["error"]["details"]["choices"]
    wrong = decide(client, world, uid, "pat", role="ml-engineer")
    assert wrong.status_code == 422
    assert decide(client, world, uid, "pat", role="privacy-reviewer").status_code == 201
    twice = decide(client, world, uid, "pat", role="legal-reviewer")
    assert (
        twice.status_code == 409
        and "one person fills one role" in twice.get_json()["error"]["message"]
    )
    # priya holds privacy-reviewer too, but that role is filled.
    assert decide(client, world, uid, "priya").status_code == 403
    assert show(client, world, uid).get_json()["state"] == "pending"


def test_reject_expire_supersede_and_invalidate(app, client, world):
    scan(client, world)
    rejected = request_use(client, world).get_json()["uid"]
    assert decide(client, world, rejected, "lee", "reject").status_code == 201
    assert show(client, world, rejected).get_json()["state"] == "rejected"
    late = decide(client, world, rejected, "priya")
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "not_pending"

    first = request_use(client, world).get_json()["uid"]
    second = request_use(client, world).get_json()["uid"]
    assert show(client, world, first).get_json()["state"] == "superseded"

    with get_db(app).unit_of_work() as session:
        row = session.exec(
            sa.select(ApprovalRequest).where(ApprovalRequest.uid == second)
        ).scalar_one()
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert decide(client, world, second, "priya").status_code == 409
    assert show(client, world, second).get_json()["state"] == "expired"

    # A new scan changes the subject (another receipt): the approval no longer holds.
    approved = request_use(client, world).get_json()["uid"]
    decide(client, world, approved, "priya")
    decide(client, world, approved, "lee")
    assert show(client, world, approved).get_json()["state"] == "approved"
    scan(client, world)
    changed = show(client, world, approved).get_json()
    assert changed["state"] == "invalidated" and changed["state_reason"] == "the subject changed"

    # Deleting the version invalidates a pending request on it.
    pending = request_use(client, world).get_json()["uid"]
    deleted = client.delete(
        f"/api/v1/datasets/{world['dataset']}/versions/1",
        json={"reason": "superseded by the corrected upload"},
        headers=auth(world["casey"]),
    )
    assert deleted.status_code == 200, deleted.get_json()
    gone = show(client, world, pending).get_json()
    assert gone["state"] == "invalidated" and gone["state_reason"] == "the subject is gone"


def test_racing_decisions_count_once(app, client, world):
    scan(client, world)
    uid = request_use(client, world).get_json()["uid"]

    def race(calls):
        barrier = threading.Barrier(len(calls))
        results = [None] * len(calls)

        def run(index, who, decision):
            local = app.test_client()
            barrier.wait()
            results[index] = decide(local, world, uid, who, decision).status_code

        threads = [
            threading.Thread(target=run, args=(i, who, decision))
            for i, (who, decision) in enumerate(calls)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    # The same reviewer six times at once: one decision.
    assert sorted(race([("priya", "approve")] * 6)) == [201, 409, 409, 409, 409, 409]
    # pat approves in the one open role while lee rejects in it: exactly one of them wins.
    outcome = race([("lee", "reject"), ("pat", "approve")])
    assert sorted(outcome) == [201, 409]
    with get_db(app).unit_of_work() as session:
        request = session.exec(sa.select(ApprovalRequest)).scalar_one()
        decisions = session.exec(sa.select(ApprovalDecision)).scalars().all()
        assert len(decisions) == 2
        assert len({d.role for d in decisions}) == 2
        expected = "approved" if outcome[1] == 201 else "rejected"
        assert request.state == expected


def test_approvals_verify_cli(app, client, world, config, tmp_path):
    from tests.test_cli import govern

    scan(client, world)
    uid = request_use(client, world).get_json()["uid"]
    decide(client, world, uid, "priya")
    env = {
        "GOVERNANCE_HOME": config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": config["GOVERNANCE_DATABASE_URL"],
    }
    ok = govern(env, "approvals", "verify", uid)
    assert ok.returncode == 0, ok.stderr
    assert "1 decision(s) verified" in ok.stdout
    with get_db(app).engine.begin() as conn:
        conn.execute(sa.update(ApprovalDecision).values(signature="00" * 64))
    bad = govern(env, "approvals", "verify", uid)
    assert bad.returncode == 1 and "bad signature" in bad.stderr


@pytest.fixture
def live_url(app):
    """Serve the test app on a loopback port for CLI commands that call the API."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_reviewers_work_from_the_cli_through_the_api(client, world, config, live_url):
    from tests.test_cli import govern

    scan(client, world)
    base = {
        "GOVERNANCE_HOME": config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": config["GOVERNANCE_DATABASE_URL"],
        "GOVERNANCE_URL": live_url,
    }

    def as_(who):
        return {**base, "GOVERNANCE_TOKEN": world[who]}

    made = govern(
        as_("morgan"),
        "approvals",
        "request-data",
        str(world["dataset"]),
        "1",
        "--family",
        "tax-assistant",
    )
    assert made.returncode == 0, made.stderr
    uid = made.stdout.split()[0]
    assert "pending" in made.stdout and "privacy-reviewer, legal-reviewer" in made.stdout
    assert uid in govern(as_("priya"), "approvals", "inbox", check=True).stdout
    shown = json.loads(govern(as_("priya"), "approvals", "show", uid, "--json", check=True).stdout)
    assert shown["evidence"]["counts"] == {"US_SSN": {"text": 1}}
    # Read as text by default: what the request is about and what the scan found, in words.
    text = govern(as_("priya"), "approvals", "show", uid, check=True).stdout
    assert f"request {uid} (dataset-use in consumer-tax): pending" in text
    assert "found     US_SSN 1" in text and "needs     privacy-reviewer, legal-reviewer" in text
    own = govern(as_("morgan"), "approvals", "approve", uid, "--comment", "mine")
    assert own.returncode == 1 and "may not decide" in own.stderr
    approved = govern(as_("priya"), "approvals", "approve", uid, "--comment", "receipt is clean")
    assert approved.returncode == 0 and "approved as privacy-reviewer" in approved.stdout
    rejected = govern(as_("lee"), "approvals", "reject", uid, "--comment", "no legal basis")
    assert rejected.returncode == 0 and "rejected as legal-reviewer" in rejected.stdout
    assert show(client, world, uid).get_json()["state"] == "rejected"
    assert "nothing waits" in govern(as_("priya"), "approvals", "inbox", check=True).stderr
    no_token = govern(base, "approvals", "inbox")
    assert no_token.returncode == 1 and "GOVERNANCE_TOKEN" in no_token.stderr


def test_a_family_of_another_domain_is_answered_as_missing(app, client, world):
    scan(client, world)
    make_family(app, "ledger-helper", "smb-accounting")
    foreign = request_use(client, world, family="ledger-helper")
    missing = request_use(client, world, family="no-such-family")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.get_json()["error"]["message"].replace("ledger-helper", "X") == (
        missing.get_json()["error"]["message"].replace("no-such-family", "X")
    )
    assert "smb-accounting" not in json.dumps(foreign.get_json())
