"""A version stored in shards, and a scan mapped over them then reduced: the same receipt
whoever scans which shard, a failing shard named, nothing of a deleted version left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from governance import runtime
from governance.datasets import service as datasets
from governance.datasets.models import DatasetShard, DatasetVersion
from governance.db import get_db
from governance.jobs.models import Job, JobKind
from governance.pii import scanning
from governance.pii import service as pii
from governance.pii.models import ScanReceipt, ScanShardResult, Verdict
from governance.pii.rules import load_rules
from governance.pii.scanner import Scanner
from tests.factories import (
    TEST_ACTOR,
    auth,
    create_dataset,
    make_domain,
    principal_token,
    scan_receipt,
)

SSN = "536-22-8741"


def records(count: int) -> list[dict[str, str]]:
    """Records of every kind the scan treats differently: clean, redacted, held, dropped."""
    out = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            out.append({"text": f"My SSN is {SSN[:-1]}{i % 10}; can I e-file for {2000 + i}?"})
        elif kind == 1:
            out.append({"prompt": f"Who claims credit {i}?", "completion": "See Schedule 8812."})
        elif kind == 2:
            out.append({"text": f"Maria Gonzalez asks whether line {i} allows the deduction."})
        else:
            out.append({"text": f"Question {i}: how does Schedule C line {i % 30} work?"})
    return out


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@pytest.fixture
def world(app, client):
    make_domain(app, "consumer-tax")
    casey = principal_token(app, "casey")
    return {"casey": casey, "dataset": create_dataset(client, casey, "consumer-tax", "returns")}


def upload(client, world, rows) -> dict:
    response = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": 2025},
        data=jsonl(rows),
        content_type="application/x-ndjson",
        headers=auth(world["casey"]),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_an_upload_is_cut_into_shards_whose_cut_does_not_change_the_version(app, client, world):
    rows = records(60)
    app.config["DATASET_SHARD_BYTES"] = 1 << 20
    whole = upload(client, world, rows)
    app.config["DATASET_SHARD_BYTES"] = 600
    sharded = upload(client, world, rows)
    assert whole["shards"] == 1 and sharded["shards"] >= 5
    # The content hash is the Merkle root of the records, wherever the shards were cut.
    assert sharded["content_hash"] == whole["content_hash"]
    rt = runtime.of(app)
    with get_db(app).unit_of_work() as session:
        version = session.exec(
            sa.select(DatasetVersion).where(DatasetVersion.number == sharded["version"])
        ).scalar_one()
        shards = datasets.version_shards(session, version)
        assert [s.ordinal for s in shards] == list(range(sharded["shards"]))
        assert [s.first_record for s in shards] == [
            sum(s.record_count for s in shards[:i]) for i in range(len(shards))
        ]
        assert all(s.plaintext_bytes <= 600 + 200 for s in shards)
        assert list(datasets.iter_version_records(session, rt.keyring, rt.store, version)) == rows
        # Each shard is sealed under its own name: one put in another's place does not open.
        blobs = Path(app.config["GOVERNANCE_HOME"]) / "blobs"
        first, second = (blobs / shards[0].blob_key), (blobs / shards[1].blob_key)
        first.write_bytes(second.read_bytes())
        with pytest.raises(Exception, match="does not decrypt"):
            list(datasets.iter_version_records(session, rt.keyring, rt.store, version))


def test_a_bad_line_after_shards_were_cut_leaves_no_shard_behind(app, client, world):
    app.config["DATASET_SHARD_BYTES"] = 300
    response = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": 2025},
        data=jsonl(records(30)) + b'{"text": 1}\n',
        content_type="application/x-ndjson",
        headers=auth(world["casey"]),
    )
    assert response.status_code == 422 and response.get_json()["error"]["details"]["line"] == 31
    blobs = Path(app.config["GOVERNANCE_HOME"]) / "blobs"
    assert not [p for p in blobs.rglob("*") if p.is_file()]
    with get_db(app).unit_of_work() as session:
        assert not session.exec(sa.select(DatasetShard)).scalars().all()


def test_deleting_a_sharded_version_removes_every_shard(app, client, world):
    app.config["DATASET_SHARD_BYTES"] = 500
    version = upload(client, world, records(40))
    blobs = Path(app.config["GOVERNANCE_HOME"]) / "blobs"
    stored = list((blobs / "consumer-tax").glob(f"{version['uid']}.*.blob"))
    assert len(stored) == version["shards"] > 1
    deleted = client.delete(
        f"/api/v1/datasets/{world['dataset']}/versions/{version['version']}",
        json={"reason": "customer asked"},
        headers=auth(world["casey"]),
    )
    assert deleted.status_code == 200, deleted.get_json()
    assert not [p for p in stored if p.exists()]
    with get_db(app).unit_of_work() as session:
        keys = session.exec(sa.select(DatasetShard.blob_key)).scalars().all()
        assert keys and all(key is None for key in keys)


# --- scans (the real scanner) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def scan(client, world, number):
    return scan_receipt(
        client, f"/api/v1/datasets/{world['dataset']}/versions/{number}/scans", auth(world["casey"])
    )


def in_process(app, number: int, scanner) -> ScanReceipt:
    rt = runtime.of(app)
    with get_db(app).unit_of_work() as session:
        version = session.exec(
            sa.select(DatasetVersion).where(DatasetVersion.number == number)
        ).scalar_one()
        rules = load_rules(app.config["GOVERNANCE_POLICY_DIR"], "consumer-tax")
        receipt = pii.scan_version(
            session, rt.keyring, rt.store, scanner, version, rules, actor=TEST_ACTOR
        )
        session.flush()
        session.expunge(receipt)
        return receipt


def test_a_sharded_scan_gives_one_receipt_whoever_scans_the_shards(app, client, world, scanner):
    runtime.of(app).use(scanner=scanner)
    app.config["DATASET_SHARD_BYTES"] = 700
    version = upload(client, world, records(80))
    assert version["shards"] >= 6
    # One process, no jobs: the same map and reduce.
    here = in_process(app, version["version"], scanner)
    assert here.verdict in (Verdict.REDACTED, Verdict.FAILED) and here.digest
    # As jobs: one `scan-shard` job per shard, each under its own lease, then the reduce.
    as_jobs = scan(client, world, version["version"]).get_json()
    assert as_jobs["digest"] == here.digest
    assert as_jobs["sanitized_shards"] == here.sanitized_shards
    assert as_jobs["sanitized_hash"] == here.sanitized_hash and as_jobs["seed"] == here.seed
    # The second scan found every text in the cache: the receipt does not depend on it.
    assert as_jobs["records_from_cache"] == as_jobs["records_total"] == 80
    assert here.records_from_cache < 80
    with get_db(app).unit_of_work() as session:
        shard_jobs = session.exec(
            sa.select(Job).where(Job.kind == JobKind.SCAN_SHARD).order_by(Job.id)
        ).scalars()
        shard_jobs = list(shard_jobs)
        assert [j.params["shard"] for j in shard_jobs] == list(range(version["shards"]))
        assert all(j.state == "succeeded" and j.attempt == 1 for j in shard_jobs)
        assert all(j.result["records"] > 0 for j in shard_jobs)
        results = session.exec(sa.select(ScanShardResult)).scalars().all()
        assert sum(r.records for r in results) == 160  # two scans of 80
    # The sanitized view reads back whole, shard after shard, in order.
    rt = runtime.of(app)
    with get_db(app).unit_of_work() as session:
        receipt = session.get(ScanReceipt, as_jobs["id"])
        view = list(pii.iter_sanitized(session, rt.keyring, rt.store, receipt))
        assert len(view) == as_jobs["sanitized_records"] == sum(as_jobs["sanitized_shards"])
        assert not any(SSN[:-1] in json.dumps(r) for r in view)
        # Positions in the labelling sample are positions in that view.
        assert all(0 <= d["position"] < len(view) for d in receipt.label_sample)


class BrokenShardScanner(Scanner):
    """A real scanner that breaks on one shard's text, as a model crashing on some input."""

    def scan_texts(self, texts, rules):
        texts = list(texts)
        if any("line 47" in text for text in texts):
            raise RuntimeError("model crashed")
        return super().scan_texts(texts, rules)


def test_a_shard_that_keeps_failing_fails_the_scan_with_its_name(app, client, world, scanner):
    broken = BrokenShardScanner.__new__(BrokenShardScanner)
    broken.__dict__.update(scanner.__dict__)
    runtime.of(app).use(scanner=broken)
    app.config["DATASET_SHARD_BYTES"] = 700
    version = upload(client, world, records(80))
    receipt = scan(client, world, version["version"]).get_json()
    with get_db(app).unit_of_work() as session:
        shard = session.exec(
            sa.select(DatasetShard).where(
                DatasetShard.first_record <= 47,
                DatasetShard.first_record + DatasetShard.record_count > 47,
            )
        ).scalar_one()
        jobs = {
            j.params["shard"]: j
            for j in session.exec(sa.select(Job).where(Job.kind == JobKind.SCAN_SHARD)).scalars()
        }
    assert receipt["verdict"] == Verdict.ERROR
    assert f"shard {shard.ordinal} failed" in receipt["error"]
    # Tried three times, then failed for good; the scan job ends failed too.
    assert jobs[shard.ordinal].state == "failed" and jobs[shard.ordinal].attempt == 3
    with get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == JobKind.SCAN)).scalar_one()
        assert job.state == "failed" and f"shard {shard.ordinal}" in job.error
    staging = Path(app.config["GOVERNANCE_HOME"]) / "blobs" / ".staging"
    assert not list(staging.glob("*"))


def test_deleting_a_version_shreds_its_sharded_views(app, client, world, scanner):
    runtime.of(app).use(scanner=scanner)
    app.config["DATASET_SHARD_BYTES"] = 700
    version = upload(client, world, records(40))
    receipt = scan(client, world, version["version"]).get_json()
    blobs = Path(app.config["GOVERNANCE_HOME"]) / "blobs" / "consumer-tax"
    views = list(blobs.glob("*.sanitized.*.blob"))
    assert len(views) == len(receipt["sanitized_shards"]) > 1
    deleted = client.delete(
        f"/api/v1/datasets/{world['dataset']}/versions/{version['version']}",
        json={"reason": "customer asked"},
        headers=auth(world["casey"]),
    )
    assert deleted.status_code == 200
    assert not [p for p in views if p.exists()]
    with get_db(app).unit_of_work() as session:
        assert not session.exec(sa.select(ScanShardResult)).scalars().all()
        run = session.exec(sa.select(scanning.ScanRun)).scalar_one()
        assert run.wrapped_key is None


def test_a_long_lived_worker_loads_a_fresh_scanner_now_and_then(app, monkeypatch):
    from governance import runtime as runtime_module

    rt = runtime.of(app)
    loads: list[object] = []

    def load() -> object:
        loads.append(object())
        return loads[-1]

    monkeypatch.setattr(rt, "scanner_factory", load)
    monkeypatch.setattr(rt, "_scanner", None)
    monkeypatch.setattr(runtime_module, "SCANNER_RECYCLE_TEXTS", 10)
    first = rt.scanner
    assert not rt.scanned(9) and rt.scanner is first
    assert rt.scanned(1)  # past the threshold: dropped, and the next use loads anew
    assert rt.scanner is not first and len(loads) == 2
    # A scanner given to the runtime (tests, a shared one) is never dropped.
    rt.use(scanner=first)
    assert not rt.scanned(100) and rt.scanner is first
