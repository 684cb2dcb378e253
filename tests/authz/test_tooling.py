"""Policy-as-code tooling: lint, table tests, effective-permission diffs, who-can, reloads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from governance.authz.policy import PolicySet
from governance.config import DEFAULT_POLICY_DIR
from governance.policy_review.diff import diff_revisions, who_can
from governance.policy_review.lint import lint
from governance.policy_review.policytest import run_policy_tests
from tests.factories import auth, close_app, principal_token
from tests.test_cli import govern


@pytest.fixture
def policies(tmp_path) -> Path:
    """A private copy of the shipped policy directory to break."""
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    return target


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def messages(directory: Path, principals=None) -> list[str]:
    return [str(p) for p in lint(directory, principals)]


def test_the_shipped_policy_lints_clean_and_passes_its_tests():
    assert lint(DEFAULT_POLICY_DIR) == []
    results = run_policy_tests(DEFAULT_POLICY_DIR)
    assert len(results) >= 40 and all(r.passed for r in results)
    # Every example principal and every role appears in some case.
    text = " ".join(r.question for r in results)
    for name in ("casey", "sam", "priya", "lee", "morgan", "jordan", "riley", "kai", "taxbot"):
        assert name in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("g, newbie, data-stewrd, consumer-tax\n", "error: role 'data-stewrd': nothing defines it"),
        (
            "g, newbie, auditor, consumer-taxx\n",
            "error: domain 'consumer-taxx': nothing defines it",
        ),
        ("p, auditor, *, dataset, upload2\n", "error: action 'upload2' on dataset"),
        ("p, auditor, *, datasets, read\n", "error: object 'datasets': nothing defines it"),
        ("g, newbie, auditor, *\n", "warning: newbie holds auditor in every domain"),
        ("p, ghost-role, *, dataset, read\n", "can never match: nobody holds role 'ghost-role'"),
        ("p, auditor, *, *, *\n", "warning: role 'auditor' is granted a wildcard"),
        ("g, auditor, data-steward, consumer-tax\n", "'auditor' is both a principal and a role"),
        ("p, auditor, *, dataset\n", "error: a p rule needs 4 non-empty fields, found 3"),
        ("g, casey, data-steward, consumer-tax\n", "warning: repeats line"),
    ],
)
def test_lint_names_the_problem_and_its_line(policies, line, expected):
    csv = policies / "policy.csv"
    number = len(csv.read_text().splitlines()) + 1
    append(csv, line)
    found = messages(policies)
    assert any(expected in m and f"policy.csv:{number}:" in m for m in found), found


def test_lint_checks_the_approval_and_pii_rules_and_the_instance(policies):
    approvals = policies / "approvals.yaml"
    approvals.write_text(
        approvals.read_text().replace(
            "required: [privacy-reviewer, legal-reviewer]",
            "required: [privacy-reviewer, data-steward]",
        )
    )
    append(policies / "pii.yaml", "\n  nowhere-domain:\n    entities: {}\n")
    found = messages(policies, principals={"casey", "data-steward", "quiet"})
    assert any("role 'data-steward' may not decide approvals" in m for m in found), found
    assert any("pii.yaml: error: domain 'nowhere-domain'" in m for m in found), found
    assert any("principal 'quiet' holds no role anywhere" in m for m in found), found
    assert any("'data-steward' is named like a role" in m for m in found), found
    assert any("principal 'priya' does not exist in this instance" in m for m in found), found


def test_policy_test_fails_readably_on_a_broken_expectation(policies, tmp_path):
    (policies / "tests" / "broken.yaml").write_text(
        "cases:\n"
        "  - allow: casey smb-accounting dataset upload\n"
        "  - deny: admin system token read\n"
    )
    env = {"GOVERNANCE_HOME": str(tmp_path / "home")}
    result = govern(env, "policy", "test", "--dir", str(policies))
    assert result.returncode == 1
    assert "FAIL tests/broken.yaml #1: allow casey smb-accounting dataset upload" in result.stdout
    assert "got deny: no rule allows it" in result.stdout
    assert (
        "FAIL tests/broken.yaml #2" in result.stdout and "by rule: admin, *, *, *" in result.stdout
    )
    assert "2 failed" in result.stderr
    assert govern(env, "policy", "test", check=True).returncode == 0


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_a_grant_added_in_a_commit_appears_in_the_diff(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(DEFAULT_POLICY_DIR, repo / "policies")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    append(repo / "policies" / "policy.csv", "g, lee, auditor, consumer-tax\n")
    approvals = repo / "policies" / "approvals.yaml"
    approvals.write_text(approvals.read_text().replace("expires_days: 14", "expires_days: 7", 1))
    git(repo, "commit", "-qam", "lee audits consumer-tax")
    result = diff_revisions(repo / "policies", "HEAD~1", "HEAD")
    gained = {permission for permission, _rule in result.gained}
    assert ("lee", "consumer-tax", "audit", "export") in gained
    assert ("lee", "smb-accounting", "audit", "export") not in gained
    assert result.lost == []
    assert result.settings["approvals.yaml"] == [("default.model-promotion.expires_days", 14, 7)]
    env = {"GOVERNANCE_HOME": str(tmp_path / "home")}
    text = govern(
        env, "policy", "diff", "HEAD~1", "HEAD", "--dir", str(repo / "policies"), check=True
    ).stdout
    assert "+ lee" in text and "audit" in text and "auditor, *, audit, export" in text
    markdown = govern(
        env, "policy", "diff", "HEAD~1", "--format", "markdown", "--dir", str(repo / "policies")
    ).stdout
    assert "| gained | lee | consumer-tax | `audit` | export |" in markdown
    # The reverse direction loses exactly what was gained.
    back = diff_revisions(repo / "policies", "HEAD", "HEAD~1")
    assert {p for p, _r in back.lost} == gained
    bad = govern(env, "policy", "diff", "no-such-rev", "--dir", str(repo / "policies"))
    assert bad.returncode == 2 and "no-such-rev" in bad.stderr


def test_who_can():
    found = dict(who_can(PolicySet.load(DEFAULT_POLICY_DIR), "decide", "approval", "consumer-tax"))
    assert set(found) == {"admin", "priya", "lee", "quinn", "morgan", "jordan"}
    assert found["priya"] == ("privacy-reviewer", "*", "approval", "decide")


def without_change_approval(policies: Path) -> None:
    """Drop the policy-change rule, so reloads need no approval (tests of the other checks)."""
    rules = policies / "approvals.yaml"
    text = rules.read_text()
    start = text.index("  policy-change:\n")
    end = text.index("\n\n", start)
    rules.write_text(text[:start] + text[end + 1 :])


@pytest.fixture
def live_policy(policies, config):
    """An app whose policy directory is a private copy, checked for changes on every call;
    policy changes need no approval here (tests/authz/test_changes.py covers that gate)."""
    from governance.app import create_app

    without_change_approval(policies)

    app = create_app(
        {
            **config,
            "TESTING": True,
            "GOVERNANCE_POLICY_DIR": str(policies),
            "POLICY_CHECK_SECONDS": 0,
        }
    )
    yield app
    close_app(app)


def test_reload_puts_a_valid_change_in_force_and_refuses_a_broken_one(live_policy, policies):
    client = live_policy.test_client()
    admin, lee = principal_token(live_policy, "admin"), principal_token(live_policy, "lee")
    before = client.get("/api/v1/policy", headers=auth(admin)).get_json()["policy_hash"]
    assert client.get("/api/v1/audit/entries", headers=auth(lee)).status_code == 403
    assert client.post("/api/v1/policy/reload", headers=auth(lee), json={}).status_code == 403

    append(policies / "policy.csv", "g, lee, auditor, system\n")
    reloaded = client.post("/api/v1/policy/reload", headers=auth(admin), json={})
    assert reloaded.status_code == 200 and reloaded.get_json()["policy_hash"] != before
    assert client.get("/api/v1/audit/entries", headers=auth(lee)).status_code == 200
    good = reloaded.get_json()["policy_hash"]

    # A broken file is refused, on request and when noticed on disk; the old policy stays.
    append(policies / "policy.csv", "g, lee, no-such-role, system\n")
    refused = client.post("/api/v1/policy/reload", headers=auth(admin), json={})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "policy_refused"
    assert any("no-such-role" in p for p in refused.get_json()["error"]["details"]["problems"])
    shown = client.get("/api/v1/policy", headers=auth(admin)).get_json()
    assert shown["policy_hash"] == good and "no-such-role" in " ".join(shown["refused"]["problems"])
    assert client.get("/api/v1/audit/entries", headers=auth(lee)).status_code == 200

    # A failing policy test is refused too.
    text = (policies / "policy.csv").read_text().replace("g, lee, no-such-role, system\n", "")
    (policies / "policy.csv").write_text(text.replace("g, casey, data-steward, consumer-tax\n", ""))
    assert client.post("/api/v1/policy/reload", headers=auth(admin), json={}).status_code == 422

    # Fixed on disk, with a new grant: the next request picks it up by itself, audited.
    (policies / "policy.csv").write_text(text + "g, lee, auditor, smb-accounting\n")
    shown = client.get("/api/v1/policy", headers=auth(admin)).get_json()
    assert shown["refused"] is None and shown["policy_hash"] not in (before, good)
    entries = client.get(
        "/api/v1/audit/entries", headers=auth(admin), query_string={"action": "policy.reload"}
    ).get_json()["items"]
    assert {e["decision"] for e in entries} >= {"ok", "refused"}


def in_dir(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "governance.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**env, "PATH": os.environ["PATH"]},
        timeout=120,
        check=False,
    )


def test_review_tools_read_the_checkout_you_stand_in(tmp_path):
    """A policy owner reviews a pull request in a fresh clone: the tools read that clone."""
    origin = tmp_path / "origin"
    origin.mkdir()
    shutil.copytree(DEFAULT_POLICY_DIR, origin / "policies")
    git(origin, "init", "-q")
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "base")
    append(origin / "policies" / "policy.csv", "g, quinn, data-steward, smb-accounting\n")
    git(origin, "commit", "-qam", "quinn stewards smb-accounting")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    env = {"GOVERNANCE_HOME": str(tmp_path / "home")}
    result = in_dir(clone, env, "policy", "diff", "HEAD~1", "HEAD")
    assert result.returncode == 0, result.stderr
    assert f"policy directory: {(clone / 'policies').resolve()} (from this checkout; git" in (
        result.stderr
    )
    assert "+ quinn" in result.stdout and "smb-accounting" in result.stdout
    who = in_dir(clone, env, "policy", "who-can", "upload", "dataset", "--domain", "smb-accounting")
    assert "quinn" in who.stdout
    # admin may call the decision endpoint, yet holds no role the approval rules require.
    deciders = in_dir(
        clone, env, "policy", "who-can", "decide", "approval", "--domain", "consumer-tax"
    ).stdout.splitlines()
    admin = next(line for line in deciders if line.startswith("admin\t"))
    assert "decides nothing" in admin
    assert not any("decides nothing" in line for line in deciders if line.startswith("priya\t"))
    # A revision of another repository is refused, not answered about other files.
    foreign = in_dir(clone, env, "policy", "diff", "deadbeef", "HEAD")
    assert foreign.returncode == 2 and "not a commit" in foreign.stderr
    # Outside any checkout, with nothing named, the tools refuse rather than guess.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = in_dir(elsewhere, env, "policy", "lint")
    assert lost.returncode == 2 and "no policy directory" in lost.stderr


def test_lint_refuses_a_policy_change_rule_nobody_can_fill(policies):
    csv = policies / "policy.csv"
    csv.write_text(csv.read_text().replace("g, quinn, security-reviewer, system\n", ""))
    found = messages(policies)
    assert any("nobody holds 'security-reviewer' in the system domain" in m for m in found), found
