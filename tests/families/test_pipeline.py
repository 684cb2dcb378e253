# ruff: noqa: F811 (pytest fixtures imported from tests/pipeline.py)
"""The whole path with real parts: scanned, approved data; a worker process training over the
API; the gate; lineage; promotion; the gateway; a killed worker; deletion propagation."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import sqlalchemy as sa

from audit.log import load_public_key
from governance import crypto, runtime
from governance.db import get_db
from governance.families.models import RetrainRequest
from governance.jobs.models import Job
from tests.factories import (
    auth,
    bundle_bytes,
    celery_worker,
    scan_receipt,
)
from tests.pipeline import (  # noqa: F401 (fixtures)
    CANARY_SSN,
    FAMILY,
    PEOPLE,
    RECORDS,
    Live,
    TrainingWorker,
    app,
    approve,
    approve_data,
    audit_entries,
    call,
    live,
    request_data_use,
    scanned_dataset,
    scanner,
    train,
    worker,
    world,
)


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
    assert trained["metrics"]["multiple_choice"]["n"] == 4
    # The usual configuration passes the memorization test (an overtrained one does not:
    # test_memorization), and the harness scored the base and the candidate.
    exposure = gate["memorization"]
    assert exposure["canaries"] == 8 and exposure["threshold_bits"] == 5.0
    assert exposure["mean_exposure_bits"] <= exposure["threshold_bits"]
    harness = gate["harness"]
    assert harness["harness"].startswith("lm-eval") and "governance_choice" in harness["tasks"]
    assert "governance_perplexity/bits_per_byte" in harness["gain"]

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
    check_evidence_formats(app, world)
    check_openlineage_events(app)

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
    entries = audit_entries(client, world, "query")
    queries = audit_entries(client, world, "model.query")
    allowed = [e for e in queries if e["decision"] == "allow"]
    assert (
        allowed and allowed[0]["details"]["prompt_hmac"] and "prompt" not in allowed[0]["details"]
    )
    assert {e["principal"] for e in entries if e["decision"] == "deny"} >= {"ledgerbot"}

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
    with get_db(app).unit_of_work() as session:
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
    check_lifecycle_webhooks(app, config, tmp_path)


def test_the_bundle_holds_no_raw_value(app, client, world):

    approve_data(client, world)
    assert train(client, world)[0] == 201
    with app.app_context(), get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == "train")).scalar_one()
        payload = bundle_bytes(app, session, job)
    import gzip

    text = gzip.decompress(payload).decode("utf-8", "replace")
    assert CANARY_SSN not in text and "Maria Gonzalez" not in text
    assert "<US_SSN>" in text and "spec.json" in text


def test_a_worker_killed_mid_job_leaves_a_job_that_completes_exactly_once(app, client, world, live):
    approve_data(client, world)
    assert train(client, world)[0] == 201
    first = worker(live, world, start_new_session=True)
    deadline = time.monotonic() + 120
    with get_db(app).unit_of_work() as session:
        while time.monotonic() < deadline:
            job = session.exec(sa.select(Job).where(Job.kind == "train")).scalar_one()
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
    with get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == "train")).scalar_one()
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
    app.config.update(JOBS_EXECUTOR="celery", CELERY_BROKER_URL=broker)
    runtime.of(app)._job_executor = None  # made again from the settings above
    env = {
        **os.environ,
        "CELERY_BROKER_URL": broker,
        "GOVERNANCE_URL": live,
        "GOVERNANCE_TOKEN": world["gpu-worker"],
    }
    celery = celery_worker("governance.workers.celery_app", "governance-training", env)
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
    with get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == "train")).scalar_one()
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
        data=b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS[:25]),
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
    status, back = call(
        client,
        "morgan",
        world,
        "POST",
        f"/api/v1/models/{FAMILY}/rollback",
        query_string={"reason": "answers drifted"},
    )
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
    assert [e["details"]["reason"] for e in rollbacks["items"]] == ["answers drifted"]


def check_evidence_formats(app, world) -> None:
    """The promoted version's ML-BOM validates as CycloneDX 1.6 and names what it came from;
    a document the schema refuses is refused; the model card says the same."""
    from sqlmodel import select

    from governance.families.mlbom import BomInvalid, mlbom, model_card, validate_bom
    from governance.families.models import ModelVersion

    with get_db(app).unit_of_work() as session:
        version = session.exec(select(ModelVersion).where(ModelVersion.number == 1)).one()
        bom = mlbom(session, version)
        markdown, card = model_card(session, version)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and model["version"] == "v1"
    assert (
        model["hashes"][0]["content"]
        == version.adapter_manifest["adapter/adapter_model.safetensors"]
    )
    (data,) = [c for c in bom["components"] if c["type"] == "data"]
    (base,) = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert base["licenses"] == [{"expression": "CC0-1.0"}]
    assert data["hashes"][0]["content"] == version.datasets[0]["content_hash"]
    assert {p["name"]: p["value"] for p in data["properties"]}["governance:scan:verdict"] == (
        "redacted"
    )
    properties = {p["name"]: p["value"] for p in model["properties"]}
    assert properties["governance:promotion-approval"] != "none"
    assert model["modelCard"]["modelParameters"]["datasets"] == [{"ref": data["bom-ref"]}]
    # The validator is not a formality: a wrong enum value is refused.
    model["modelCard"]["modelParameters"]["approach"]["type"] = "guesswork"
    with pytest.raises(BomInvalid):
        validate_bom(bom)
    assert card["promotion"]["decisions"] and "## Training data" in markdown
    assert CANARY_SSN not in markdown and CANARY_SSN not in json.dumps(bom)


def check_openlineage_events(app) -> None:
    """The audit log's OpenLineage projection: one event per step, a training run that starts
    and completes under one run id, and every event rebuilt through the client's classes
    (generated from the OpenLineage schema, whose validators check times, URIs and ids)."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from sqlmodel import select

    from governance.audit.models import AuditEntry
    from governance.audit.openlineage import lineage_events

    with get_db(app).unit_of_work() as session:
        entries = session.exec(select(AuditEntry).order_by(AuditEntry.seq)).all()
        events = list(lineage_events(entries))
    text = "\n".join(json.dumps(e) for e in events)
    assert CANARY_SSN not in text
    for event in events:
        RunEvent(
            eventType=RunState(event["eventType"]),
            eventTime=event["eventTime"],
            run=Run(runId=event["run"]["runId"]),
            job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            inputs=[InputDataset(d["namespace"], d["name"]) for d in event.get("inputs", [])],
            outputs=[OutputDataset(d["namespace"], d["name"]) for d in event.get("outputs", [])],
            producer=event["producer"],
        )
        assert event["schemaURL"].startswith("https://openlineage.io/spec/")
        for facet in event["run"]["facets"].values():
            assert facet["_producer"] and facet["_schemaURL"]
    jobs = [(e["job"]["name"], e["eventType"]) for e in events]
    for step in ("dataset.upload", "pii.scan", "approval.decide"):
        assert (step, "COMPLETE") in jobs, jobs
    train = [e for e in events if e["job"]["name"] == f"model.train.{FAMILY}"]
    assert [e["eventType"] for e in train] == ["START", "COMPLETE"]
    assert train[0]["run"]["runId"] == train[1]["run"]["runId"]
    assert [(d["namespace"], d["name"]) for d in train[1]["outputs"]] == [
        ("governance://consumer-tax", f"model-version/{FAMILY}/1")
    ]
    assert (f"model.evaluate.{FAMILY}", "COMPLETE") in jobs
    assert (f"model.promote.{FAMILY}", "COMPLETE") in jobs
    audit = train[0]["run"]["facets"]["governance_audit"]
    assert audit["action"] == "model.train" and len(audit["leafHash"]) == 64


def check_lifecycle_webhooks(app, config, tmp_path) -> None:
    """A subscriber to consumer-tax hears every lifecycle step of this test, once, signed."""
    from governance.webhooks import service
    from tests.webhooks.support import SUBSCRIBER, Clock, Receiver, subscribe

    secret = service.create_secret(config["GOVERNANCE_HOME"], SUBSCRIBER)
    receiver = Receiver(tmp_path, secret)
    sender = service.Sender(
        {**config, "GOVERNANCE_POLICY_DIR": str(subscribe(tmp_path, receiver.url))}, clock=Clock()
    )
    try:
        counts = service.pump(get_db(app), sender)
        got = receiver.received()
    finally:
        sender.close()
        receiver.stop()
    assert counts["delivered"] == counts["queued"] == len(got), counts
    assert all(r["verified"] for r in got)
    types = [r["event"]["type"] for r in got]
    for expected in (
        "model.version.created",
        "approval.decided",
        "model.version.promoted",
        "dataset.version.deleted",
        "model.version.tainted",
    ):
        assert expected in types, types
    assert types.index("model.version.promoted") < types.index("model.version.tainted")
    assert {r["event"]["data"]["domain"] for r in got} == {"consumer-tax"}
    assert CANARY_SSN not in json.dumps(got)
