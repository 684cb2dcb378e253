"""Replay: recorded decisions asked again of a proposed policy, and the changes reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from governance import runtime
from governance.audit.models import AuditEntry
from governance.authz.policy import PolicySet
from governance.config import DEFAULT_POLICY_DIR
from governance.db import utcnow
from governance.policy_review.replay import ALLOW_TO_DENY, DENY_TO_ALLOW, parse_since, replay_log
from tests.factories import auth, principal_token

QUESTIONS = [
    ("casey", "consumer-tax", "dataset", "read"),
    ("casey", "consumer-tax", "dataset", "read"),
    ("casey", "consumer-tax", "dataset", "upload"),
    ("drew", "consumer-tax", "dataset", "read"),
    ("taxbot", "consumer-tax", "model/tax-assistant", "query"),
    ("sam", "smb-accounting", "dataset", "read"),
]


def ask_all(app, client) -> list[int]:
    """Record decisions through the decision API, as a service that asks would."""
    headers = auth(principal_token(app, "admin"))
    seqs = []
    for subject, domain, obj, action in QUESTIONS:
        answer = client.post(
            "/api/v1/authorize",
            headers=headers,
            json={"subject": subject, "domain": domain, "object": obj, "action": action},
        )
        assert answer.status_code == 200, answer.get_json()
        seqs.append(answer.get_json()["audit_seq"])
    return seqs


def proposed(tmp_path: Path) -> Path:
    """The shipped policy with casey's steward role moved to drew."""
    head = tmp_path / "proposed"
    shutil.copytree(DEFAULT_POLICY_DIR, head)
    csv = head / "policy.csv"
    text = csv.read_text()
    assert "g, casey, data-steward, consumer-tax\n" in text
    csv.write_text(
        text.replace(
            "g, casey, data-steward, consumer-tax\n", "g, drew, data-steward, consumer-tax\n"
        )
    )
    return head


def test_replay_reports_each_change_with_its_rules_and_counts_pruned_entries(app, client, tmp_path):
    seqs = ask_all(app, client)
    base, head = PolicySet.load(DEFAULT_POLICY_DIR), PolicySet.load(proposed(tmp_path))
    database = runtime.of(app).database
    with database.engine.connect() as connection:
        report = replay_log(connection, base, head, since="all")
    assert report.examined >= len(QUESTIONS)
    assert report.allow_to_deny == 3 and report.deny_to_allow == 1
    groups = {(g.direction, g.principal, g.action): g for g in report.groups}
    lost = groups[(ALLOW_TO_DENY, "casey", "read")]
    assert lost.count == 2 and lost.kind == "dataset" and lost.domain == "consumer-tax"
    assert lost.base_rule == ["data-steward", "*", "dataset", "read"] and lost.head_rule is None
    assert [e["seq"] for e in lost.examples] == seqs[:2]
    gained = groups[(DENY_TO_ALLOW, "drew", "read")]
    assert gained.base_rule is None and gained.head_rule == ["data-steward", "*", "dataset", "read"]
    assert report.unavailable == 0 and report.drift == 0
    # A domain narrows the window; the other domain's decision is not examined.
    with database.engine.connect() as connection:
        smb = replay_log(connection, base, head, since="all", domain="smb-accounting")
    assert not smb.changed and smb.examined >= 1

    # Pruned entries keep their place but lose their question: counted, never skipped.
    with database.engine.begin() as connection:
        connection.execute(
            sa.update(AuditEntry.__table__)
            .where(AuditEntry.__table__.c.seq == seqs[0])
            .values(principal="-", object="-", request_id=None, details="{}", pruned_at=utcnow())
        )
    with database.engine.connect() as connection:
        again = replay_log(connection, base, head, since="all")
    assert again.unavailable == 1 and again.allow_to_deny == 2
    assert "1 pruned by retention and unavailable" in again.as_text()
    markdown = again.as_markdown()
    assert "2 decision(s) would change from allow to deny" in markdown
    assert "| allow->deny | 1 | `casey` | read | dataset | consumer-tax |" in markdown

    # The same policy on both sides: nothing changes.
    with database.engine.connect() as connection:
        same = replay_log(connection, base, base, since="all")
    assert not same.changed and "No recorded decision would change" in same.as_markdown()


def test_replay_counts_decisions_made_under_an_earlier_policy_as_drift(app, client, tmp_path):
    ask_all(app, client)
    # Replayed as though drew had always been the steward: the recorded answers for casey and
    # drew now differ from the "policy in force"; that is drift, not the proposal's change.
    moved = PolicySet.load(proposed(tmp_path))
    with runtime.of(app).database.engine.connect() as connection:
        report = replay_log(connection, moved, moved, since="all")
    assert report.drift == 4 and not report.changed


def test_parse_since():
    now = utcnow()
    assert parse_since("all") is None
    assert (now - parse_since("90d", now)).days == 90
    assert (now - parse_since("2w", now)).days == 14
    assert parse_since("2026-01-01").year == 2026
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday")


def govern(env: dict, *args: str) -> SimpleNamespace:
    """`govern ARGS` in this process (click's runner): the suite's time, not a new interpreter
    per call."""
    from click.testing import CliRunner

    from governance.cli import main

    keys = ("GOVERNANCE_HOME", "GOVERNANCE_DATABASE_URL")
    result = CliRunner().invoke(main, list(args), env={k: env[k] for k in keys})
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def test_cli_replay_exit_status_and_formats(app, client, env, tmp_path):
    ask_all(app, client)
    head = proposed(tmp_path)
    changed = govern(
        env, "policy", "replay", "--against", str(head), "--since", "all", "--format", "json"
    )
    assert changed.returncode == 1, changed.stderr
    document = json.loads(changed.stdout)
    assert document["allow_to_deny"] == 3 and document["deny_to_allow"] == 1
    assert document["by"]["principal"]["casey allow->deny"] == 3
    same = govern(env, "policy", "replay", "--against", str(DEFAULT_POLICY_DIR))
    assert same.returncode == 0, same.stderr
    assert "0 allow->deny, 0 deny->allow" in same.stdout
    bad = govern(env, "policy", "replay", "--against", str(head), "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_cli_replay_against_a_git_revision(app, client, env, tmp_path):
    import subprocess

    ask_all(app, client)
    repo = tmp_path / "repo"
    shutil.copytree(DEFAULT_POLICY_DIR, repo / "policies")

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "base")
    head = proposed(tmp_path)
    shutil.copy(head / "policy.csv", repo / "policies" / "policy.csv")
    git("commit", "-qam", "drew stewards consumer-tax")
    policies = str(repo / "policies")
    at_head = govern(
        env, "policy", "replay", "--dir", policies, "--against", "HEAD", "--since", "all"
    )
    assert at_head.returncode == 1 and "3 allow->deny, 1 deny->allow" in at_head.stdout
    at_base = govern(env, "policy", "replay", "--dir", policies, "--against", "HEAD~1")
    assert at_base.returncode == 0, at_base.stdout + at_base.stderr
    unknown = govern(env, "policy", "replay", "--dir", policies, "--against", "no-such-rev")
    assert unknown.returncode == 2 and "neither a directory nor a commit" in unknown.stderr
