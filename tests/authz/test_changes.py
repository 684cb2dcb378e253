"""Policy changes approved like data: evidence, two reviewers, a gated reload, break-glass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from governance.app import create_app
from governance.config import DEFAULT_POLICY_DIR
from governance.policy_review.changes import files_of
from tests.console.conftest import sign_in
from tests.factories import (
    auth,
    close_app,
    finished_job,
    make_domain,
    principal_token,
    run_jobs,
)


@pytest.fixture
def live(tmp_path, config):
    """An app over a private copy of the shipped policy, checked for changes on every call."""
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    app = create_app(
        {
            **config,
            "TESTING": True,
            "GOVERNANCE_POLICY_DIR": str(policies),
            "POLICY_CHECK_SECONDS": 0,
        }
    )
    yield app, policies
    close_app(app)


def grant(policies: Path, line: str) -> None:
    with (policies / "policy.csv").open("a") as handle:
        handle.write(line)


def test_a_policy_change_goes_through_review_and_two_approvals_before_reload(live):
    app, policies = live
    client = app.test_client()
    admin = auth(principal_token(app, "admin"))
    quinn, priya = auth(principal_token(app, "quinn")), auth(principal_token(app, "priya"))
    in_force = client.get("/api/v1/policy", headers=admin).get_json()["policy_hash"]
    # Decisions to replay: drew asked twice about reading datasets, denied today.
    for _ in range(2):
        asked = client.post(
            "/api/v1/authorize",
            headers=admin,
            json={
                "subject": "drew",
                "domain": "consumer-tax",
                "object": "dataset",
                "action": "read",
            },
        )
        assert asked.get_json()["allowed"] is False

    grant(policies, "g, drew, data-steward, consumer-tax\n")
    # Noticed on disk, refused: no approval covers it. The reload endpoint says so too (409).
    shown = client.get("/api/v1/policy", headers=admin).get_json()
    assert shown["policy_hash"] == in_force and shown["refused"] is not None
    assert "no approved policy-change request" in " ".join(shown["refused"]["problems"])
    refused = client.post("/api/v1/policy/reload", headers=admin, json={})
    assert refused.status_code == 409, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "policy_unapproved" and "request-change" in error["message"]

    job = finished_job(
        app,
        client,
        client.post("/api/v1/policy/changes", headers=admin, json={"files": files_of(policies)}),
        admin,
    )
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["lint"]["errors"] == 0 and result["tests"]["failed"] == 0
    assert result["diff"]["gained"] > 0 and result["diff"]["lost"] == 0
    replay = result["replay"]
    assert replay["deny_to_allow"] == 2 and replay["allow_to_deny"] == 0
    assert replay["groups"][0]["principal"] == "drew"
    assert sorted(result["required_roles"]) == ["privacy-reviewer", "security-reviewer"]
    uid = result["approval"]

    detail = client.get(f"/api/v1/approvals/{uid}", headers=quinn).get_json()
    assert detail["kind"] == "policy-change" and detail["domain"] == "system"
    assert detail["evidence"]["replay"]["deny_to_allow"] == 2
    assert "Policy replay" in detail["evidence"]["replay_markdown"]
    # `govern approvals show` reads it in words.
    from governance.cli.approvals import request_text

    text = "\n".join(request_text(detail))
    assert "(policy-change in system): pending" in text
    assert "recorded decision(s): 0 allow->deny, 2 deny->allow" in text
    assert "deny->allow x2 drew read dataset in consumer-tax" in text
    # Never the author: the proposer may not approve their own change.
    own = client.post(
        f"/api/v1/approvals/{uid}/decisions", headers=admin, json={"decision": "approve"}
    )
    assert own.status_code == 403
    for reviewer in (quinn, priya):
        decided = client.post(
            f"/api/v1/approvals/{uid}/decisions", headers=reviewer, json={"decision": "approve"}
        )
        assert decided.status_code == 201, decided.get_json()
        if reviewer is quinn:
            still = client.post("/api/v1/policy/reload", headers=admin, json={})
            assert still.status_code == 409  # one of two roles is not enough
    reloaded = client.post("/api/v1/policy/reload", headers=admin, json={})
    assert reloaded.status_code == 200, reloaded.get_json()
    assert reloaded.get_json()["policy_hash"] == result["policy_hash"] != in_force
    assert reloaded.get_json()["approval"] == uid and reloaded.get_json()["approval_required"]

    # The console: the policy page lists the change, the request page shows its replay.
    browser = app.test_client()
    sign_in(browser, principal_token(app, "quinn"), "/console/policy")
    listed = browser.get("/console/policy")
    assert listed.status_code == 200 and uid[:10] in listed.text
    page = browser.get(f"/console/approvals/{uid}")
    assert page.status_code == 200
    assert "Change to policy" in page.text and "2 from deny to allow" in page.text
    assert "data-steward, *, dataset, read" in page.text  # the rule after, for drew


def test_a_proposal_that_fails_its_tests_gets_no_approval_request(live):
    app, policies = live
    client = app.test_client()
    admin = auth(principal_token(app, "admin"))
    files = files_of(policies)
    files["policy.csv"] = files["policy.csv"].replace("g, casey, data-steward, consumer-tax\n", "")
    job = finished_job(
        app,
        client,
        client.post("/api/v1/policy/changes", headers=admin, json={"files": files}),
        admin,
    )
    assert job["state"] == "failed" and "no approval was requested" in job["error"]
    assert job["result"]["tests"]["failed"] > 0 and "approval" not in job["result"]
    listed = client.get("/api/v1/approvals", headers=admin).get_json()["items"]
    assert not [r for r in listed if r["kind"] == "policy-change"]


@pytest.mark.parametrize(
    ("files", "field"),
    [
        ({"../policy.csv": "x", "model.conf": "x"}, "files.../policy.csv"),
        ({"policy.csv": "x", "model.conf": "x", "run.sh": "x"}, "files.run.sh"),
        ({"policy.csv": "x"}, "files.model.conf"),
        ({}, "files"),
        (
            {"policy.csv": "x", "model.conf": "x", "policy.csv/a.yaml": "x"},
            "files.policy.csv/a.yaml",
        ),
    ],
)
def test_bad_proposals_are_refused_naming_the_file(live, files, field):
    app, _ = live
    client = app.test_client()
    admin = auth(principal_token(app, "admin"))
    answer = client.post("/api/v1/policy/changes", headers=admin, json={"files": files})
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["error"]["details"][0]["field"] == field


def test_only_the_named_role_may_break_glass_and_the_approval_follows(live):
    app, policies = live
    client = app.test_client()
    admin = auth(principal_token(app, "admin"))
    before = client.get("/api/v1/policy", headers=admin).get_json()["policy_hash"]
    grant(policies, "g, drew, data-steward, consumer-tax\n")
    reason = {"break_glass": {"reason": "incident 42: stewards locked out of uploads"}}
    # A principal allowed to reload but not named for break-glass is refused.
    grant_reload = policies.parent / "other"
    assert not grant_reload.exists()
    forced = client.post("/api/v1/policy/reload", headers=admin, json=reason)
    assert forced.status_code == 200, forced.get_json()
    after = forced.get_json()["policy_hash"]
    assert after != before
    entries = client.get(
        "/api/v1/audit/entries", headers=admin, query_string={"action": "policy.break-glass"}
    ).get_json()["items"]
    assert entries and entries[0]["details"]["reason"].startswith("incident 42")
    assert run_jobs(app) >= 1
    pending = [
        r
        for r in client.get("/api/v1/approvals", headers=admin).get_json()["items"]
        if r["kind"] == "policy-change"
    ]
    assert (
        pending and pending[0]["subject"] == f"policy/{after}" and pending[0]["state"] == "pending"
    )
    detail = client.get(
        f"/api/v1/approvals/{pending[0]['uid']}", headers=auth(principal_token(app, "quinn"))
    )
    assert detail.get_json()["evidence"]["base_policy"] == before


def test_break_glass_is_closed_when_the_rules_name_no_role(live):
    app, policies = live
    rules = policies / "approvals.yaml"
    # The rules in force decide: dropping break_glass on disk changes nothing until approved.
    rules.write_text(rules.read_text().replace("    break_glass: [admin]\n", ""))
    client = app.test_client()
    admin = auth(principal_token(app, "admin"))
    forced = client.post(
        "/api/v1/policy/reload",
        headers=admin,
        json={"break_glass": {"reason": "testing the gate here"}},
    )
    assert forced.status_code == 200  # admin is still named by the policy in force
    grant(policies, "g, drew, data-steward, consumer-tax\n")
    again = client.post(
        "/api/v1/policy/reload",
        headers=admin,
        json={"break_glass": {"reason": "testing the gate here"}},
    )
    assert again.status_code == 403, again.get_json()
    assert "break-glass is not open" in again.get_json()["error"]["message"]


def test_a_replay_over_the_api_covers_the_domains_the_caller_may_read(live):
    app, policies = live
    client = app.test_client()
    admin = auth(principal_token(app, "admin"))
    audrey = auth(principal_token(app, "audrey"))  # an auditor of both domains and system
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    for subject, domain in (("drew", "consumer-tax"), ("sam", "smb-accounting")):
        client.post(
            "/api/v1/authorize",
            headers=admin,
            json={"subject": subject, "domain": domain, "object": "dataset", "action": "read"},
        )
    grant(policies, "g, drew, data-steward, consumer-tax\n")
    files = files_of(policies)
    job = finished_job(
        app,
        client,
        client.post("/api/v1/policy/replay", headers=audrey, json={"files": files}),
        audrey,
    )
    replay = job["result"]["replay"]
    # Audrey may not read the entries of objects no domain owns: the replay says what it covered.
    assert replay["domains"] == ["consumer-tax", "smb-accounting", "system"]
    assert replay["deny_to_allow"] == 1 and replay["groups"][0]["principal"] == "drew"
    assert "in 3 domain(s) you may read" in job["result"]["replay_markdown"]
    assert "approval" not in job["result"]  # a replay asks nobody to approve anything
