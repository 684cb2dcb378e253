# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""The ML engineer's path from the command line, over the API with their own token: list
families, train twice, promote, query, roll back; every call is theirs in the audit log."""

from __future__ import annotations

import os
import subprocess
import sys

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
    asked = govern(live, world["morgan"], "version", "promote", FAMILY, str(number), "--request")
    assert asked.returncode == 0, asked.stderr
    uid = asked.stdout.split()[0]
    approve(client, world, uid, ("jordan", "lee"), "gate passed")
    promoted = govern(live, world["morgan"], "version", "promote", FAMILY, str(number))
    assert promoted.returncode == 0, promoted.stderr
    return promoted.stdout


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
        run_worker(live, world)
        assert f"v{number}  production" in promote(client, live, world, number)
    versions = govern(live, morgan, "version", "list", FAMILY).stdout
    assert f"{FAMILY} v2  production" in versions and f"{FAMILY} v1  retired" in versions
    answer = govern(live, world["taxbot"], "query", FAMILY, "Where do I report interest?")
    assert answer.returncode == 0, answer.stderr
    rolled = govern(live, morgan, "version", "rollback", FAMILY)
    assert rolled.returncode == 0 and f"{FAMILY} v1  production" in rolled.stdout
    refused = govern(live, world["taxbot"], "version", "rollback", FAMILY)
    assert refused.returncode == 1 and "no model family" in refused.stderr
    shown = govern(live, morgan, "family", "show", FAMILY)
    assert '"production_version": 1' in shown.stdout
