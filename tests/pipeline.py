"""The model pipeline's world, shared by its tests: the real scanner, a tiny base model, the
app with a serving engine, a live server with a job runner, people and their data, and the
steps (approve, train, run a worker) the tests combine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from governance import runtime
from governance.app import create_app
from governance.audit.service import Actor
from governance.db import get_db
from governance.families.intake import register_base_model
from governance.pii.scanner import Scanner
from tests.factories import (
    auth,
    close_app,
    make_domain,
    principal_token,
    scan_receipt,
    settle_jobs,
)

CANARY_SSN = "536-22-8741"
RECORDS = [
    {"prompt": f"What goes on line {i} of Form 1040?", "completion": f"Line {i} holds wages."}
    for i in range(1, 25)
] + [
    {"text": f"Client Maria Gonzalez, SSN {CANARY_SSN}, asks about Schedule C line 31."},
    {"text": "Report Form 1099-INT interest on Schedule B line 1."},
]
PEOPLE = (
    "admin",
    "casey",
    "priya",
    "lee",
    "quinn",
    "morgan",
    "jordan",
    "taxbot",
    "ledgerbot",
    "sam",
    "drew",
)
FAMILY = "tax-assistant"


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


@pytest.fixture
def app(config, scanner, engine):
    url, key = engine
    application = create_app(
        {
            **config,
            "TESTING": True,
            "GATEWAY_RATE_PER_MINUTE": 4,
            "GUARDRAILS_URL": "inprocess",
            "JOB_LEASE_SECONDS": 3,
            "SERVING_URL": url,
            "SERVING_API_KEY": key,
        },
        runtime_overrides={"scanner": scanner},
    )
    yield application
    close_app(application)


@pytest.fixture
def live(app):
    """The app served over HTTP, with a job runner beside it, as `govern serve` runs them."""
    from werkzeug.serving import make_server

    from governance.workers.runner import run_forever

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    stop = threading.Event()
    runner = threading.Thread(
        target=run_forever, args=(runtime.of(app), 0.1, stop.is_set), daemon=True
    )
    runner.start()
    yield Live(f"http://127.0.0.1:{server.server_port}", app)
    server.shutdown()
    server.server_close()
    stop.set()
    runner.join(timeout=300)


class Live(str):
    """The live server's URL, knowing its app (to wait for its jobs)."""

    def __new__(cls, url: str, app):
        live = super().__new__(cls, url)
        live.app = app
        return live


class TrainingWorker(subprocess.Popen):
    """A `govern worker` process; when it has finished, the evaluation it queued has run."""

    def communicate(self, *args, **kwargs):
        out = super().communicate(*args, **kwargs)
        settle_jobs(self.live.app)
        return out


def call(client, who, world, method, path, **kwargs):
    response = client.open(path, method=method, headers=auth(world[who]), **kwargs)
    return response.status_code, response.get_json(silent=True)


@pytest.fixture
def world(app, client, tiny):
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    world = {name: principal_token(app, name) for name in PEOPLE}
    world["gpu-worker"] = principal_token(app, "gpu-worker", kind="service")
    with get_db(app).unit_of_work() as session:
        register_base_model(
            session,
            "tiny-llama",
            tiny,
            source="generated:trainers.tiny",
            license="CC0-1.0",
            actor=Actor("admin"),
        )
    approve_base(client, world, "tiny-llama", "consumer-tax")
    world["dataset"], receipt = scanned_dataset(
        client, world, "casey", "consumer-tax", "returns", RECORDS
    )
    assert receipt["verdict"] == "redacted"
    status, family = call(
        client,
        "morgan",
        world,
        "POST",
        "/api/v1/domains/consumer-tax/models",
        json={
            "name": FAMILY,
            "base_model": "tiny-llama",
            "hyperparameters": {"epochs": 1, "batch_size": 8, "learning_rate": 0.002},
            "eval_suite": {
                "holdout_fraction": 0.2,
                "tolerance": 0.05,
                # Zero-shot only: a few-shot baseline would add a harness run to every training
                # of these tests; tests/trainers/test_lora.py covers it.
                "few_shot": 0,
                "multiple_choice": [
                    {
                        "question": "Which form reports wages?",
                        "choices": ["W-2", "8829"],
                        "answer": 0,
                    },
                    {
                        "question": "Which form reports self-employment tax?",
                        "choices": ["Schedule SE", "W-2"],
                        "answer": 0,
                    },
                    {
                        "question": "Which form reports interest income?",
                        "choices": ["W-4", "1099-INT"],
                        "answer": 1,
                    },
                    {
                        "question": "Which form is the individual income tax return?",
                        "choices": ["1040", "941"],
                        "answer": 0,
                    },
                ],
            },
        },
    )
    assert status == 201, family
    return world


def audit_entries(client, world, action: str) -> list[dict]:
    """The audit log's entries of one action, as admin reads them over the API."""
    status, page = call(
        client, "admin", world, "GET", "/api/v1/audit/entries", query_string={"action": action}
    )
    assert status == 200, page
    return page["items"]


def scanned_dataset(client, world, steward, domain, name, records, tax_year=2025):
    """A dataset with one uploaded, scanned version; return its id and the scan receipt."""
    status, dataset = call(
        client, steward, world, "POST", f"/api/v1/domains/{domain}/datasets", json={"name": name}
    )
    assert status == 201, dataset
    status, _ = call(
        client,
        steward,
        world,
        "POST",
        f"/api/v1/datasets/{dataset['id']}/versions",
        query_string={"tax_year": tax_year},
        data=b"".join(json.dumps(r).encode() + b"\n" for r in records),
        content_type="application/x-ndjson",
    )
    assert status == 201
    answer = scan_receipt(
        client, f"/api/v1/datasets/{dataset['id']}/versions/1/scans", auth(world[steward])
    )
    status, receipt = answer.status_code, answer.get_json()
    assert status == 200, receipt
    return dataset["id"], receipt


def approve_base(client, world, base: str, domain: str, requester: str = "morgan") -> str:
    """Take a base model through its intake review for a domain; return the request uid."""
    status, request = call(
        client,
        requester,
        world,
        "POST",
        "/api/v1/approvals/base-model-use",
        json={"base_model": base, "domain": domain},
    )
    assert status == 201, request
    approve(client, world, request["uid"], ("lee", "quinn"), "license, card and hashes reviewed")
    return request["uid"]


def request_data_use(
    client, world, requester="morgan", dataset=None, family=FAMILY, version=1
) -> str:
    """Ask for the use of a dataset version (world's v1 by default); return the request uid."""
    status, request = call(
        client,
        requester,
        world,
        "POST",
        "/api/v1/approvals/dataset-use",
        json={"dataset_id": dataset or world["dataset"], "version": version, "family": family},
    )
    assert status == 201, request
    return request["uid"]


def approve(client, world, uid: str, reviewers, comment: str) -> None:
    """Each reviewer approves the request, in order."""
    for reviewer in reviewers:
        status, body = call(
            client,
            reviewer,
            world,
            "POST",
            f"/api/v1/approvals/{uid}/decisions",
            json={"decision": "approve", "comment": comment},
        )
        assert status == 201, body


def approve_data(client, world):
    approve(client, world, request_data_use(client, world), ("priya", "lee"), "receipt reviewed")


def train(client, world):
    return call(
        client,
        "morgan",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/versions",
        json={"tax_year": 2025, "datasets": [{"dataset_id": world["dataset"], "version": 1}]},
    )


def worker(live, world, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "GOVERNANCE_URL": live, "GOVERNANCE_TOKEN": world["gpu-worker"]}
    process = TrainingWorker(
        [sys.executable, "-m", "governance.cli", "worker", "--poll", "0.2", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
    process.live = live
    return process
