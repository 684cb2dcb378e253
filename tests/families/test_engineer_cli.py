# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""The ML engineer's path from the command line, over the API with their own token: list
families, train twice, promote, query, roll back; every call is theirs in the audit log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.factories import principal_token
from tests.pipeline import (  # noqa: F401 (fixtures and helpers)
    FAMILY,
    app,
    approve,
    approve_data,
    live,
    scanner,
    worker,
    world,
)


def govern(live: str, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOVERNANCE_URL": live, "GOVERNANCE_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "governance.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def run_worker(live, world) -> None:
    done = worker(live, world, "--once")
    _out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err


def promote(client, live, world, number: int) -> str:
    refused = govern(live, world["morgan"], "version", "promote", FAMILY, str(number))
    # The refusal names the next command.
    assert refused.returncode == 1 and "--request" in refused.stderr, refused.stderr
    asked = govern(live, world["morgan"], "version", "promote", FAMILY, str(number), "--request")
    assert asked.returncode == 0, asked.stderr
    uid = asked.stdout.split()[0]
    approve(client, world, uid, ("jordan", "lee"), "gate passed")
    promoted = govern(live, world["morgan"], "version", "promote", FAMILY, str(number))
    assert promoted.returncode == 0, promoted.stderr
    return promoted.stdout


def test_an_auditor_exports_a_bundle_over_the_api_that_verifies_offline(world, live, tmp_path):
    # An auditor with a token and no access to the instance: the export runs as a job on the
    # service, and the bundle downloaded verifies offline.
    auditor = principal_token(live.app, "audrey")
    bundle = tmp_path / "bundle"
    exported = govern(live, auditor, "audit", "export", "--format", "bundle", "--out", str(bundle))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("exported ") and (bundle / "entries.jsonl").is_file()
    from governance import crypto, runtime

    key = tmp_path / "log-key.pem"
    key.write_bytes(crypto.public_key_pem(runtime.of(live.app).audit_log.signing_key.public_key()))
    checked = subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(bundle), "--public-key", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # An auditor's export holds their domains' entries: the verifier says what that means.
    assert "a selection, not the whole log (complete: false)" in checked.stdout
    listing = tmp_path / "entries.csv"
    csv = govern(live, auditor, "audit", "export", "--format", "csv", "--out", str(listing))
    assert csv.returncode == 0 and listing.read_text().startswith("seq,"), csv.stderr
    # Signed access reports, over the API too.
    may = tmp_path / "who-may.json"
    report = govern(live, auditor, "audit", "report", "who-may", "--out", str(may))
    assert report.returncode == 0 and report.stdout.startswith("wrote who-may report"), report
    assert json.loads(may.read_text())["signature"]
    did = tmp_path / "who-did.csv"
    args = ["audit", "report", "who-did", "--format", "csv", "--out", str(did)]
    report = govern(live, auditor, *args)
    assert report.returncode == 0, report.stderr
    assert Path(f"{did}.sig").read_text().strip(), "the CSV's detached signature"


def test_a_family_is_created_with_its_recipe_and_gate_from_the_command_line(world, live, tmp_path):
    morgan = world["morgan"]
    one = tmp_path / "one.jsonl"
    item = {"question": "Which form reports wages?", "choices": ["W-2", "8829"], "answer": 0}
    one.write_text(json.dumps(item) + "\n")
    args = ["family", "create", "consumer-tax", "cli-family", "--base-model", "tiny-llama"]
    # One item cannot give a 3-shot baseline: refused, saying what would do.
    refused = govern(live, morgan, *args, "--choices", str(one))
    assert refused.returncode == 1 and "at least 4 multiple_choice items" in refused.stderr
    created = govern(
        live,
        morgan,
        *args,
        "--choices",
        str(one),
        "--few-shot",
        "0",
        "--epochs",
        "3",
        "--learning-rate",
        "0.001",
        "--lora-r",
        "4",
        "--holdout-fraction",
        "0.2",
        "--min-gain",
        "governance_perplexity/bits_per_byte=0.01",
        "--accept-no-signal",
    )
    assert created.returncode == 0, created.stderr
    shown = govern(live, morgan, "family", "show", "cli-family").stdout
    for expected in (
        '"epochs": 3',
        '"learning_rate": 0.001',
        '"r": 4',
        '"holdout_fraction": 0.2',
        '"few_shot": 0',
        '"governance_perplexity/bits_per_byte": 0.01',
        '"accept_no_signal": true',
        "Which form reports wages?",
    ):
        assert expected in shown, (expected, shown)
    bad = govern(live, morgan, *args, "--min-gain", "bits_per_byte")
    assert bad.returncode == 2 and "TASK/METRIC=VALUE" in bad.stderr


def test_train_promote_query_and_roll_back_from_the_command_line(client, world, live):
    morgan = world["morgan"]
    listed = govern(live, morgan, "family", "list")
    assert listed.returncode == 0 and FAMILY in listed.stdout
    assert govern(live, world["sam"], "family", "list").stdout.strip() == ""  # other domain
    approve_data(client, world)
    dataset = f"{world['dataset']}:1"
    for number in (1, 2):
        started = govern(
            live, morgan, "version", "train", FAMILY, "--tax-year", "2025", "--dataset", dataset
        )
        assert started.returncode == 0, started.stderr
        assert f"{FAMILY} v{number}  training" in started.stdout
        assert "training: queued" in started.stdout  # the job's state, in the listing too
        shown = json.loads(govern(live, morgan, "version", "show", FAMILY, str(number)).stdout)
        assert (shown["work"]["kind"], shown["work"]["state"]) == ("train", "queued")
        if number == 1:
            # Follow the version while a worker trains it and the runner gates it.
            training = worker(live, world, "--once")
            followed = govern(
                live, morgan, "version", "show", FAMILY, "1", "--follow", "--interval", "0.2"
            )
            _out, err = training.communicate(timeout=600)
            assert training.returncode == 0, err
            assert followed.returncode == 0, followed.stderr
            assert "training: " in followed.stderr, followed.stderr
            final = json.loads(followed.stdout)
            assert final["work"] is None and final["status"] == "evaluated", final["status"]
        else:
            run_worker(live, world)
        assert f"v{number}  production" in promote(client, live, world, number)
    # The lineage over the API, with the engineer's own token (not the operator's instance).
    tree = govern(live, morgan, "lineage", FAMILY, "1")
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.startswith(f"{FAMILY} v1 (tax year 2025") and "base model tiny-llama" in (
        tree.stdout
    )
    versions = govern(live, morgan, "version", "list", FAMILY).stdout
    assert f"{FAMILY} v2  production" in versions and f"{FAMILY} v1  retired" in versions
    answer = govern(live, world["taxbot"], "query", FAMILY, "Where do I report interest?")
    assert answer.returncode == 0, answer.stderr
    rolled = govern(live, morgan, "version", "rollback", FAMILY, "--reason", "answers drifted")
    assert rolled.returncode == 0 and f"{FAMILY} v1  production" in rolled.stdout
    refused = govern(live, world["taxbot"], "version", "rollback", FAMILY)
    assert refused.returncode == 1 and "no model family" in refused.stderr
    shown = govern(live, morgan, "family", "show", FAMILY)
    assert '"production_version": 1' in shown.stdout
