"""The whole path with real parts: scanned, approved data; a worker process training over the
API; the gate; lineage; promotion; the gateway; a killed worker; deletion propagation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit.log import load_public_key
from governance import crypto, runtime
from governance.app import create_app
from governance.audit.service import Actor
from governance.db import get_db
from governance.families.models import RetrainRequest
from governance.families.service import register_base_model
from governance.pii.scanner import Scanner
from governance.training.models import TrainingJob
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
PEOPLE = ("admin", "casey", "priya", "lee", "morgan", "jordan", "taxbot", "ledgerbot", "sam")
FAMILY = "tax-assistant"


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "tiny"
    subprocess.run(
        [sys.executable, "-m", "trainers.tiny", str(path)], check=True, capture_output=True
    )
    return path


@pytest.fixture
def app(config, scanner, engine):
    url, key = engine
    application = create_app(
        {
            **config,
            "TESTING": True,
            "GATEWAY_RATE_PER_MINUTE": 4,
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

    from governance import runtime
    from governance.jobs.runner import run_forever

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop = threading.Event()
    runner = threading.Thread(
        target=run_forever, args=(runtime.of(app), 0.1, stop.is_set), daemon=True
    )
    runner.start()
    yield Live(f"http://127.0.0.1:{server.server_port}", app)
    server.shutdown()
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
    with get_db(app).session_scope() as session:
        register_base_model(session, "tiny-llama", tiny, actor=Actor("admin"))
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
                "multiple_choice": [
                    {
                        "question": "Which form reports wages?",
                        "choices": ["W-2", "8829"],
                        "answer": 0,
                    }
                ],
            },
        },
    )
    assert status == 201, family
    return world


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


def test_training_needs_approved_data_of_the_same_domain(client, world):
    status, body = train(client, world)
    assert status == 409 and body["error"]["code"] == "not_approved"
    # A steward of another domain's dataset cannot be used, whatever its approvals.
    _, other = call(
        client,
        "sam",
        world,
        "POST",
        "/api/v1/domains/smb-accounting/datasets",
        json={"name": "books"},
    )
    call(
        client,
        "sam",
        world,
        "POST",
        f"/api/v1/datasets/{other['id']}/versions",
        query_string={"tax_year": 2025},
        data=b'{"text": "Schedule C line 1"}\n',
        content_type="application/x-ndjson",
    )
    status, body = call(
        client,
        "morgan",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/versions",
        json={"tax_year": 2025, "datasets": [{"dataset_id": other["id"], "version": 1}]},
    )
    # Another domain's dataset is refused exactly as one that does not exist: nothing of it
    # (its version's uid, its name) is in the answer.
    assert status == 404 and body["error"]["code"] == "not_found"
    _status, missing = call(
        client,
        "morgan",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/versions",
        json={"tax_year": 2025, "datasets": [{"dataset_id": 999999, "version": 1}]},
    )
    assert body["error"]["message"].replace(str(other["id"]), "N") == missing["error"][
        "message"
    ].replace("999999", "N")
    assert "books" not in json.dumps(body)


def test_train_evaluate_promote_query_and_taint(app, client, world, live, config, tmp_path):
    approve_data(client, world)
    status, version = train(client, world)
    assert status == 201 and version["status"] == "training"
    done = worker(live, world, "--once")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "result accepted" in out

    status, trained = call(client, "morgan", world, "GET", f"/api/v1/models/{FAMILY}/versions/1")
    assert trained["status"] == "evaluated", trained
    gate = trained["evaluation"]
    assert gate["gate"] == "passed" and gate["pii_probe"]["probes"] >= 1
    assert gate["pii_probe"]["leaks"] == 0
    assert trained["metrics"]["multiple_choice"]["n"] == 1

    status, lineage = call(
        client, "taxbot", world, "GET", f"/api/v1/models/{FAMILY}/versions/1/lineage"
    )
    assert status == 404  # taxbot may query the model, not read how it was made.
    status, lineage = call(
        client, "jordan", world, "GET", f"/api/v1/models/{FAMILY}/versions/1/lineage"
    )
    used = lineage["datasets"][0]
    assert used["content_hash"] and used["scan"]["verdict"] == "redacted"
    assert [d["reviewer"] for d in used["approval"]["decisions"]] == ["priya", "lee"]
    assert lineage["policy_hash"] and lineage["base_model"]["weights_sha256"]
    key = load_public_key(
        crypto.public_key_pem(crypto.load_signing_key(app.config["GOVERNANCE_HOME"]).public_key())
    )
    key.verify(bytes.fromhex(lineage["signature"]), bytes.fromhex(lineage["digest"]))

    status, request = call(
        client, "morgan", world, "POST", f"/api/v1/models/{FAMILY}/versions/1/promotion"
    )
    assert status == 201 and request["required_roles"] == ["legal-reviewer", "ml-engineer"]
    uid = request["uid"]
    status, _ = call(client, "morgan", world, "POST", f"/api/v1/models/{FAMILY}/versions/1/promote")
    assert status == 409
    status, _own = call(
        client,
        "morgan",
        world,
        "POST",
        f"/api/v1/approvals/{uid}/decisions",
        json={"decision": "approve"},
    )
    assert status == 403
    approve(client, world, uid, ("jordan", "lee"), "gate passed")
    status, promoted = call(
        client, "morgan", world, "POST", f"/api/v1/models/{FAMILY}/versions/1/promote"
    )
    assert status == 200 and promoted["status"] == "production"

    status, answer = call(
        client,
        "taxbot",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/generate",
        json={"prompt": "Client Maria Gonzalez, SSN", "max_new_tokens": 16},
    )
    assert status == 200 and answer["version"] == 1 and answer["completion_tokens"] >= 1
    assert CANARY_SSN not in answer["text"]
    status, _ = call(
        client,
        "ledgerbot",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/generate",
        json={"prompt": "hello"},
    )
    assert status == 404
    codes = [
        call(
            client,
            "taxbot",
            world,
            "POST",
            f"/api/v1/models/{FAMILY}/generate",
            json={"prompt": "Form 1040", "max_new_tokens": 2},
        )[0]
        for _ in range(4)
    ]
    assert codes[-1] == 429 and codes.count(200) == 3
    status, entries = call(
        client, "admin", world, "GET", "/api/v1/audit/entries", query_string={"action": "query"}
    )
    status, queries = call(
        client,
        "admin",
        world,
        "GET",
        "/api/v1/audit/entries",
        query_string={"action": "model.query"},
    )
    allowed = [e for e in queries["items"] if e["decision"] == "allow"]
    assert (
        allowed and allowed[0]["details"]["prompt_hmac"] and "prompt" not in allowed[0]["details"]
    )
    assert {e["principal"] for e in entries["items"] if e["decision"] == "deny"} >= {"ledgerbot"}

    # Deleting the data taints the version, and it stops serving at once.
    status, _ = call(
        client,
        "casey",
        world,
        "DELETE",
        f"/api/v1/datasets/{world['dataset']}/versions/1",
        json={"reason": "client withdrew consent"},
    )
    assert status == 200
    status, tainted = call(client, "morgan", world, "GET", f"/api/v1/models/{FAMILY}/versions/1")
    assert tainted["status"] == "tainted"
    with get_db(app).session_scope() as session:
        retrain = session.exec(sa.select(RetrainRequest)).scalar_one()
        assert (retrain.tax_year, retrain.state) == (2025, "queued")
    runtime.of(app).limiter.reset()
    status, body = call(
        client,
        "taxbot",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/generate",
        json={"prompt": "Form 1040"},
    )
    assert status == 409 and body["error"]["code"] == "no_serving_version"

    # The erasure report names the tombstone, the tainted version and the audit entries; signed.
    from tests.test_cli import govern

    _, tombstone = call(
        client, "casey", world, "GET", f"/api/v1/datasets/{world['dataset']}/versions/1"
    )
    env = {
        "GOVERNANCE_HOME": config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": config["GOVERNANCE_DATABASE_URL"],
    }
    out = tmp_path / "erasure.json"
    govern(env, "erasure-report", tombstone["uid"], "--out", str(out), check=True)
    report = json.loads(out.read_text())
    assert report["dataset_version"]["key_destroyed"] is True
    assert [
        (v["family"], v["version"], v["status"]) for v in report["affected_model_versions"]
    ] == [(FAMILY, 1, "tainted")]
    assert {a["action"] for a in report["actions"]} == {"dataset.delete", "model.taint"}
    assert govern(env, "erasure-report", str(out), "--verify").returncode == 0
    report["affected_model_versions"] = []
    out.write_text(json.dumps(report))
    assert govern(env, "erasure-report", str(out), "--verify").returncode == 1


def test_the_bundle_holds_no_raw_value(app, client, world):
    from governance.training import service

    approve_data(client, world)
    assert train(client, world)[0] == 201
    with app.app_context(), get_db(app).session_scope() as session:
        job = session.exec(sa.select(TrainingJob).where(TrainingJob.kind == "train")).scalar_one()
        payload = service.build_bundle(session, runtime.of(app).keyring, runtime.of(app).store, job)
    import gzip

    text = gzip.decompress(payload).decode("utf-8", "replace")
    assert CANARY_SSN not in text and "Maria Gonzalez" not in text
    assert "<US_SSN>" in text and "spec.json" in text


def test_a_worker_killed_mid_job_leaves_a_job_that_completes_exactly_once(app, client, world, live):
    approve_data(client, world)
    assert train(client, world)[0] == 201
    first = worker(live, world, start_new_session=True)
    deadline = time.monotonic() + 120
    with get_db(app).session_scope() as session:
        while time.monotonic() < deadline:
            job = session.exec(
                sa.select(TrainingJob).where(TrainingJob.kind == "train")
            ).scalar_one()
            session.expire_all()
            if job.state == "running":
                break
            time.sleep(0.1)
    assert job.state == "running" and job.attempt == 1
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    time.sleep(3.5)  # The lease (3 s in this app) lapses without heartbeats.
    second = worker(live, world, "--once")
    _out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    with get_db(app).session_scope() as session:
        job = session.exec(sa.select(TrainingJob).where(TrainingJob.kind == "train")).scalar_one()
        assert job.state == "succeeded" and job.attempt == 2
    _, completions = call(
        client,
        "admin",
        world,
        "GET",
        "/api/v1/audit/entries",
        query_string={"action": "job.complete"},
    )
    assert len(completions["items"]) == 1
    _status, version = call(client, "morgan", world, "GET", f"/api/v1/models/{FAMILY}/versions/1")
    assert version["status"] == "evaluated"


def test_a_real_celery_worker_trains_a_job_sent_through_redis(app, client, world, live):
    import redis

    # One Redis database per test database: `make test` runs both at once.
    sqlite = app.config["GOVERNANCE_DATABASE_URL"].startswith("sqlite")
    broker = f"redis://127.0.0.1:6379/{14 if sqlite else 15}"
    redis.Redis.from_url(broker).flushdb()
    app.config.update(TRAINING_EXECUTOR="celery", CELERY_BROKER_URL=broker)
    env = {
        **os.environ,
        "GOVERNANCE_CELERY_BROKER": broker,
        "GOVERNANCE_URL": live,
        "GOVERNANCE_TOKEN": world["gpu-worker"],
    }
    celery = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "governance.training.celery_app",
            "worker",
            "-Q",
            "governance-training",
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "info",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        approve_data(client, world)
        status, _version = train(client, world)
        assert status == 201
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            _, current = call(client, "morgan", world, "GET", f"/api/v1/models/{FAMILY}/versions/1")
            if current["status"] != "training" and current["status"] != "trained":
                break
            time.sleep(0.5)
        assert current["status"] == "evaluated", current
    finally:
        celery.terminate()
        _, err = celery.communicate(timeout=60)
    assert "governance.train_job" in err
    with get_db(app).session_scope() as session:
        job = session.exec(sa.select(TrainingJob).where(TrainingJob.kind == "train")).scalar_one()
        assert (
            job.executor == "celery"
            and job.state == "succeeded"
            and job.worker.startswith("celery@")
        )


def test_rollback_and_fallback_to_the_newest_untainted_version(app, client, world, live):
    def produce(number: int) -> None:
        """Approve data version `number`, train on it, pass the gate, promote."""
        uid = request_data_use(client, world, version=number)
        approve(client, world, uid, ("priya", "lee"), "ok")
        status, version = call(
            client,
            "morgan",
            world,
            "POST",
            f"/api/v1/models/{FAMILY}/versions",
            json={
                "tax_year": 2025,
                "datasets": [{"dataset_id": world["dataset"], "version": number}],
            },
        )
        assert status == 201, version
        done = worker(live, world, "--once")
        done.communicate(timeout=300)
        n = version["version"]
        _, promotion = call(
            client, "morgan", world, "POST", f"/api/v1/models/{FAMILY}/versions/{n}/promotion"
        )
        approve(client, world, promotion["uid"], ("jordan", "lee"), "ok")
        status, promoted = call(
            client, "morgan", world, "POST", f"/api/v1/models/{FAMILY}/versions/{n}/promote"
        )
        assert status == 200, promoted

    approve_data(client, world)  # an approval for v1 that produce() supersedes; harmless
    produce(1)
    # A second upload of the same year (a correction), scanned; then version 2 of the model.
    status, _ = call(
        client,
        "casey",
        world,
        "POST",
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": 2025},
        data=b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS[:20]),
        content_type="application/x-ndjson",
    )
    assert status == 201
    scan_receipt(
        client, f"/api/v1/datasets/{world['dataset']}/versions/2/scans", auth(world["casey"])
    )
    produce(2)

    def states():
        _, listing = call(client, "morgan", world, "GET", f"/api/v1/models/{FAMILY}/versions")
        return {v["version"]: v["status"] for v in listing["items"]}

    assert states() == {1: "retired", 2: "production"}
    assert call(client, "taxbot", world, "POST", f"/api/v1/models/{FAMILY}/rollback")[0] == 404
    status, back = call(client, "morgan", world, "POST", f"/api/v1/models/{FAMILY}/rollback")
    assert status == 200 and back["version"] == 1
    assert states() == {1: "production", 2: "retired"}
    # Promote 2 again by rolling forward is not a thing: a new promotion is; here, taint v1 and
    # the family falls back to the newest untainted version, v2, at once.
    status, _ = call(
        client,
        "casey",
        world,
        "DELETE",
        f"/api/v1/datasets/{world['dataset']}/versions/1",
        json={"reason": "client withdrew consent"},
    )
    assert status == 200
    assert states() == {1: "tainted", 2: "retired"}
    status, answer = call(
        client,
        "taxbot",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/generate",
        json={"prompt": "Form 1040", "max_new_tokens": 4},
    )
    assert status == 200 and answer["version"] == 2
    _, rollbacks = call(
        client,
        "admin",
        world,
        "GET",
        "/api/v1/audit/entries",
        query_string={"action": "model.rollback"},
    )
    assert [e["details"]["to"] for e in rollbacks["items"]] == [1]
