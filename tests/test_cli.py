"""The `govern` command line, run as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from governance.cli import main

GOVERN = [sys.executable, "-m", "governance.cli"]


def govern(env: dict, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*GOVERN, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def create_domain(env: dict, name: str) -> None:
    """Create a data domain through the CLI, as an operator would."""
    govern(
        env,
        "domain",
        "create",
        name,
        "--jurisdiction",
        "US",
        "--retention-days",
        "2555",
        check=True,
    )


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands(main)), ids=" ".join)
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_operator_workflow(env):
    first = govern(env, "init", check=True)
    assert "created" in first.stdout
    again = govern(env, "init", check=True)
    assert "nothing changed" in again.stdout

    govern(env, "principal", "create", "casey", check=True)
    duplicate = govern(env, "principal", "create", "casey")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    token = govern(env, "token", "create", "casey", "--expires", "30d", check=True).stdout
    assert token.strip().startswith("gov_") and token.count("\n") == 1

    listing = govern(env, "token", "list", "casey", check=True).stdout
    token_id = listing.split()[0]
    assert token.strip() not in listing
    revoked = govern(env, "token", "revoke", token_id, check=True)
    assert revoked.stdout.startswith(f"revoked {token_id}")

    create_domain(env, "consumer-tax")
    bad = govern(
        env, "domain", "create", "Bad Name", "--jurisdiction", "US", "--retention-days", "1"
    )
    assert bad.returncode == 1 and "name" in bad.stderr
    assert govern(env, "domain", "list", check=True).stdout.startswith("consumer-tax\tUS")


def test_commands_before_init_exit_3(tmp_path):
    env = {**os.environ, "GOVERNANCE_HOME": str(tmp_path / "nothing")}
    env.pop("GOVERNANCE_DATABASE_URL", None)
    result = govern(env, "domain", "list")
    assert result.returncode == 3
    assert "govern init" in result.stderr


def test_bad_expiry_is_refused(env):
    govern(env, "init", check=True)
    result = govern(env, "token", "create", "admin", "--expires", "someday")
    assert result.returncode == 1 and "expiry" in result.stderr


def test_demo_runs_end_to_end(env):
    result = govern(env, "demo", check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["allowed_calls"] >= 1 and summary["denied_calls"] >= 1
    statuses = {c["call"]: c["status"] for c in summary["calls"]}
    assert statuses["GET /api/v1/domains/consumer-tax"] == 200
    assert statuses["GET /api/v1/domains/smb-accounting"] == 403
    assert summary["audit_verified"] is True, result.stdout[-3000:]
    # The annual cycle: 2025's model tainted by the deletion of its data, 2026's in production.
    assert summary["production"] == {"tax-assistant": 2}
    assert summary["versions"] == [
        {"family": "tax-assistant", "version": 1, "tax_year": 2025, "status": "tainted"},
        {"family": "tax-assistant", "version": 2, "tax_year": 2026, "status": "production"},
    ]
    assert summary["tainted"] == [{"family": "tax-assistant", "version": 1, "tax_year": 2025}]
    assert summary["denied_queries"] == 1
    # The policy change: refused until approved, then in force; casey's recorded denial in
    # smb-accounting is among the decisions its replay says would change.
    # smb-accounting's DP version: per business, within budget; the next one is refused.
    private = summary["private_version"]
    assert private["unit"] == "customer" and 0 < private["epsilon"] <= 8.0
    assert private["ledger_spent"] == pytest.approx(private["epsilon"], abs=1e-3)
    assert private["over_budget_refused"] == 409 and private["compared"]
    change = summary["policy_change"]
    assert change["refused_before_approval"] and change["deny_to_allow"] >= 1
    assert change["allow_to_deny"] == 0 and change["replayed"] > 10
    assert summary["dataset_scan"]["verdict"] == "redacted"
    assert summary["dataset_scan"]["counts"]["US_SSN"] > 0
    offline = subprocess.run(
        [sys.executable, "-m", "audit", "verify", summary["audit_bundle"], "--trust-bundle-key"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert offline.returncode == 0, offline.stderr


def test_a_failing_demo_step_is_named_without_a_traceback(env, tmp_path):
    """With a policy that gives casey no role, the upload is refused: the demo says which step
    failed and why, and exits non-zero, with no Python traceback for the user."""
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).parents[1] / "policies", policies)
    lines = (policies / "policy.csv").read_text().splitlines(keepends=True)
    (policies / "policy.csv").write_text("".join(x for x in lines if ", casey," not in x))
    result = govern({**env, "GOVERNANCE_POLICY_DIR": str(policies)}, "demo")
    assert result.returncode != 0
    assert "error: the demo stopped: demo step failed" in result.stderr
    assert "HTTP 403" in result.stderr and "Traceback" not in result.stderr


def test_audit_commands(env, tmp_path):
    import sqlalchemy as sa

    govern(env, "init", check=True)
    govern(env, "principal", "create", "casey", check=True)
    create_domain(env, "consumer-tax")
    assert "tree size" in govern(env, "audit", "checkpoint", check=True).stdout
    verified = govern(env, "audit", "verify", check=True).stdout
    assert verified.startswith("OK: ") and "verified up to entry" in verified

    bundle = tmp_path / "bundle.tar.gz"
    govern(env, "audit", "export", "--format", "bundle", "--out", str(bundle), check=True)
    key = tmp_path / "log.pem"
    key.write_text(govern(env, "audit", "public-key", check=True).stdout)
    offline = subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(bundle), "--public-key", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert offline.returncode == 0, offline.stderr
    csv_out = tmp_path / "entries.csv"
    govern(
        env,
        "audit",
        "export",
        "--format",
        "csv",
        "--principal",
        "local:root",
        "--out",
        str(csv_out),
        check=True,
    )
    report = tmp_path / "who-may.csv"
    govern(env, "audit", "report", "who-may", "--format", "csv", "--out", str(report), check=True)
    assert report.read_text().startswith("principal,domain,model,role")
    assert (tmp_path / "who-may.csv.sig").read_text().strip()

    engine = sa.create_engine(env["GOVERNANCE_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET principal = 'mallory' WHERE seq = 2"))
    engine.dispose()
    tampered = govern(env, "audit", "verify")
    assert tampered.returncode == 1
    assert "entry 2 was altered" in tampered.stderr


def test_serve_stops_cleanly_on_sigterm(env, tmp_path):
    """An idle `govern serve` exits 0 promptly on SIGTERM (gunicorn's control socket is off and
    workers skip the interpreter's teardown); BENCHMARKS-free: the bound here is generous."""
    import signal
    import socket
    import time

    govern(env, "init", check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # gunicorn's stop is what is tested: engine and guard elsewhere (nothing listens there).
    env = {**env, "SERVING_URL": "http://127.0.0.1:9", "GUARDRAILS_URL": "http://127.0.0.1:9"}
    server = subprocess.Popen(
        [*GOVERN, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(1)  # let the worker finish booting
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert "Traceback" not in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        server.stderr.close()


def test_serve_restarts_a_job_runner_killed_with_sigkill(env, tmp_path):
    """`kill -9` of a child of `govern serve` is healed without a person: the supervisor in
    the master starts it again."""
    import signal
    import socket
    import time

    govern(env, "init", check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**env, "SERVING_URL": "http://127.0.0.1:9", "GUARDRAILS_URL": "http://127.0.0.1:9"}
    server = subprocess.Popen(
        [*GOVERN, "serve", "--port", str(port), "--workers", "1", "--runners", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def runners() -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(server.pid), "-f", "governance.cli jobs run"],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(pid) for pid in found.stdout.split()]

    def wait_for(predicate, seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError("timed out")

    try:
        [first] = wait_for(runners)
        os.kill(first, signal.SIGKILL)
        [second] = wait_for(lambda: [p for p in runners() if p != first])
        assert second != first
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert "job runner 1 (pid" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        server.stderr.close()


def test_a_worker_waits_for_the_service_to_come_up(env, tmp_path):
    """Started before the service (or during its restart), the worker retries with backoff
    instead of dying, and works once the service answers."""
    import socket
    import time

    govern(env, "init", check=True)
    govern(env, "principal", "create", "gpu-worker", "--kind", "service", check=True)
    token = govern(env, "token", "create", "gpu-worker", check=True).stdout.strip()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    worker = subprocess.Popen(
        [*GOVERN, "worker", "--once", "--poll", "0.2"],
        env={**env, "GOVERNANCE_URL": f"http://127.0.0.1:{port}", "GOVERNANCE_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    server = subprocess.Popen(
        [*GOVERN, "serve", "--port", str(port), "--workers", "1"],
        env={**env, "SERVING_URL": "http://127.0.0.1:9", "GUARDRAILS_URL": "http://127.0.0.1:9"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err
        assert "trying again" in out and "0 job(s) done" in out
    finally:
        for process in (worker, server):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def test_the_command_listing_says_each_commands_first_sentence_whole():
    from click.testing import CliRunner

    from governance.cli import main

    for args in ([], ["version"], ["dataset"], ["approvals"], ["audit"]):
        listing = CliRunner().invoke(main, [*args, "--help"], terminal_width=80).output
        commands = listing.split("Commands:")[1]
        assert "..." not in commands, commands
    listing = CliRunner().invoke(main, ["--help"], terminal_width=80).output
    assert "PII scans of prompts and answers" in listing
