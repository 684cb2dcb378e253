# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""The public client against a live server: a steward uploads and scans, a reviewer decides,
an auditor reads the log; errors carry the service's message and status."""

from __future__ import annotations

import pytest

from governance.client import ApiError, Client
from tests.pipeline import (  # noqa: F401 (fixtures)
    app,
    live,
    scanner,
    world,
)


def test_a_reviewer_script_through_the_client(world, live):
    steward = Client(live, world["casey"])
    dataset = steward.call("POST", "/api/v1/domains/consumer-tax/datasets", {"name": "client"})
    version = steward.upload(
        dataset["id"], 2025, [{"text": f"Schedule C line {i}?"} for i in range(1, 6)]
    )
    receipt = steward.scan(dataset["id"], version["version"])
    assert receipt["verdict"] == "pass" and receipt["canary_recall"] >= 0.95
    assert version["scan_verdict"] is None  # not scanned when uploaded
    read = steward.call("GET", f"/api/v1/datasets/{dataset['id']}/versions/{version['version']}")
    assert read["status"] == "ready" and read["scan_verdict"] == "pass"
    assert steward.quarantine(dataset["id"], version["version"]) == []
    with pytest.raises(ApiError) as refused:
        Client(live, world["casey"]).call("GET", "/api/v1/domains/smb-accounting")
    assert refused.value.status == 403 and "may not" in refused.value.message
    auditor = Client(live, world["admin"])
    entries = auditor.audit_entries(principal="casey", action="upload")
    assert entries and all(e["principal"] == "casey" for e in entries)


def test_dataset_commands_act_as_the_steward_over_the_api(world, live, tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "GOVERNANCE_URL": live, "GOVERNANCE_TOKEN": world["casey"]}

    def govern(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "governance.cli", "dataset", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )

    created = govern("create", "consumer-tax", "remote")
    assert created.returncode == 0, created.stderr
    dataset_id = created.stdout.strip()
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps({"text": f"Form 1040 line {i}"}) + "\n" for i in range(4)))
    uploaded = govern("upload", dataset_id, str(data), "--tax-year", "2025")
    assert uploaded.returncode == 0 and "4 records" in uploaded.stdout, uploaded.stderr
    scanned = govern("scan", dataset_id, "1")
    assert scanned.returncode == 0 and json.loads(scanned.stdout)["verdict"] == "pass"
    assert "remote" in govern("list", "consumer-tax").stdout
    deleted = govern("delete", dataset_id, "1", "--reason", "test")
    assert deleted.returncode == 0, deleted.stderr
    entries = Client(live, world["admin"]).audit_entries(action="dataset.delete")
    assert entries[-1]["principal"] == "casey"  # recorded as the steward, not local:root


def test_progress_lines_say_the_step_and_the_time_left(monkeypatch):
    import time

    from governance.client import WorkClock

    clock = WorkClock()
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])

    def work(state="running", **progress):
        return {
            "job": "a" * 32,
            "kind": "train",
            "state": state,
            "attempt": 1,
            "progress": progress,
        }

    assert clock.line(work("queued")) == "training: queued (job aaaaaaaa), waiting for a worker"
    assert clock.line(work(step=10, of=40, epoch=1, loss=5.4321)) == (
        "training: running, step 10/40 (25%), epoch 1, loss 5.432"
    )
    now[0] = 110.0  # 10 steps in 10 s: 20 left, about 20 s
    assert clock.line(work(step=20, of=40, epoch=1)).endswith(
        "step 20/40 (50%), epoch 1, about 20 s left"
    )
    gate = {**work(stage="probe"), "kind": "evaluate", "attempt": 2}
    assert clock.line(gate) == "evaluation gate: running, stage probe, attempt 2"
    assert WorkClock.key(work(step=20, of=40)) != WorkClock.key(work(step=21, of=40))
