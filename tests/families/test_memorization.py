# ruff: noqa: F811 (pytest fixtures imported from tests/pipeline.py)
"""The gate's memorization test: canaries drawn per job, inserted into the sanitized training
set only, measured by a real worker, and a configuration that memorizes them refused."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest
import sqlalchemy as sa

from governance.db import get_db
from governance.domains.settings import Memorization
from governance.families import canaries
from governance.jobs.models import Job
from governance.policy_review.lint import lint
from tests.factories import bundle_bytes
from tests.pipeline import (  # noqa: F401 (fixtures)
    FAMILY,
    app,
    approve,
    approve_data,
    audit_entries,
    call,
    live,
    request_data_use,
    scanner,
    train,
    worker,
    world,
)


def bundle_files(app, job: Job) -> dict[str, str]:

    with app.app_context(), get_db(app).unit_of_work() as session:
        job = session.get(Job, job.id)
        payload = bundle_bytes(app, session, job)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(payload))) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def test_canaries_are_drawn_per_job_and_go_into_the_training_part_only(app, client, world):
    approve_data(client, world)
    assert train(client, world)[0] == 201
    with get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == "train")).scalar_one()
    plan = job.params["memorization"]
    assert len(plan["canaries"]) == Memorization().canaries
    assert len({c["secret"] for c in plan["canaries"]}) == len(plan["canaries"])
    files = bundle_files(app, job)
    spec = json.loads(files["spec.json"])
    assert spec["memorization"] == plan
    for canary in plan["canaries"]:
        text = canary["prefix"] + canary["secret"]
        assert files["train.jsonl"].count(json.dumps(text)) == 1
        assert canary["secret"] not in files["eval.jsonl"]
    # Another attempt of the job trains on the same bundle: the positions follow the job.
    assert bundle_files(app, job)["train.jsonl"] == files["train.jsonl"]
    # The lineage records the test's settings, never the secrets.
    _, lineage = call(client, "jordan", world, "GET", f"/api/v1/models/{FAMILY}/versions/1/lineage")
    assert lineage["training_config"]["memorization"]["canaries"] == len(plan["canaries"])
    assert not any(c["secret"] in json.dumps(lineage) for c in plan["canaries"])


def test_insertion_repeats_each_canary_and_keeps_every_record():
    plan = canaries.draw(Memorization(canaries=3, repetitions=4))
    records = [{"text": f"record {i}"} for i in range(10)]
    mixed = canaries.insert(records, plan, "job-a")
    assert len(mixed) == 10 + 3 * 4
    assert [r for r in mixed if r in records] == records  # order of the data kept
    assert canaries.insert(records, {}, "job-a") == records
    assert canaries.draw(Memorization(canaries=0)) == {}


def test_an_overtrained_configuration_is_refused(app, client, world, live):
    # The world's approved data, trained to death: a hundred epochs at a high learning rate.
    # (The usual configuration passes: see test_pipeline's first test.)
    status, _ = call(
        client,
        "morgan",
        world,
        "POST",
        "/api/v1/domains/consumer-tax/models",
        json={
            "name": "overfit",
            "base_model": "tiny-llama",
            "hyperparameters": {"epochs": 100, "batch_size": 4, "learning_rate": 0.01},
            # 26 records: 20% held out gives the gate the 5 it needs.
            "eval_suite": {"holdout_fraction": 0.2},
        },
    )
    assert status == 201
    uid = request_data_use(client, world, family="overfit")
    approve(client, world, uid, ("priya", "lee"), "receipt reviewed")
    status, _ = call(
        client,
        "morgan",
        world,
        "POST",
        "/api/v1/models/overfit/versions",
        json={"tax_year": 2025, "datasets": [{"dataset_id": world["dataset"], "version": 1}]},
    )
    assert status == 201
    done = worker(live, world, "--once")
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err

    _, overfit = call(client, "morgan", world, "GET", "/api/v1/models/overfit/versions/1")
    threshold = Memorization().max_exposure_bits
    assert overfit["status"] == "failed"
    assert overfit["evaluation"]["memorization"]["mean_exposure_bits"] > threshold
    assert "memorization" in overfit["status_reason"]
    entries = audit_entries(client, world, "model.evaluate")
    decisions = {e["object"]: e["decision"] for e in entries}
    assert decisions == {"model/overfit": "failed"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"canaries": 65}, "canaries"),
        ({"max_exposure_bits": 0}, "max_exposure_bits"),
        ({"candidates": 10}, "candidates"),
        ({"threshold": 3}, "threshold"),
    ],
)
def test_lint_refuses_bad_memorization_settings(tmp_path, body, problem):
    import shutil
    from pathlib import Path

    import yaml

    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).parents[2] / "policies", policies)
    document = yaml.safe_load((policies / "domains.yaml").read_text())
    document["domains"]["consumer-tax"]["memorization"] = body
    (policies / "domains.yaml").write_text(yaml.safe_dump(document))
    problems = [p.message for p in lint(policies) if p.file == "domains.yaml"]
    assert problems and problem in problems[0]
