"""Retention: a domain's old audit entries lose their content but not their place in the
tree, so the log, its checkpoints and exported bundles still verify; an entry erased outside
retention is caught; old receipts lose their samples and old reports go."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import select

from audit.bundle import VerificationError, verify_bundle
from governance import crypto, runtime
from governance.app import create_app
from governance.audit.models import AuditEntry
from governance.audit.pruning import ranges_of
from governance.audit.service import AuditEvent, TreeCache
from governance.config import DEFAULT_POLICY_DIR
from governance.datasets.models import DatasetVersion
from governance.db import get_db, utcnow
from governance.domains.models import Domain
from governance.flows.log_export import EntryFilter, verify_log, write_log_bundle
from governance.flows.retention import enforce
from governance.jobs.models import Job
from governance.jobs.service import export_file
from governance.pii.models import ScanReceipt
from tests.factories import (
    TEST_ACTOR,
    auth,
    close_app,
    create_dataset,
    make_domain,
    principal_token,
)

LATER = dt.timedelta(days=40)


@pytest.fixture
def app(config, tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    document = yaml.safe_load((policies / "domains.yaml").read_text())
    document["domains"]["consumer-tax"]["retention"] = {
        "audit_entries": "30d",
        "receipts": "30d",
        "reports": "30d",
    }
    (policies / "domains.yaml").write_text(yaml.safe_dump(document))
    application = create_app({**config, "TESTING": True, "GOVERNANCE_POLICY_DIR": str(policies)})
    make_domain(application, "consumer-tax")
    make_domain(application, "smb-accounting")
    yield application
    close_app(application)


def event(i: int, domain: str | None) -> AuditEvent:
    return AuditEvent(
        principal=f"person-{i}", action="dataset.read", object=f"dataset/{i}", domain=domain,
        decision="allow", policy_hash="0" * 64, request_id=f"r{i}", details={"i": i},
    )  # fmt: skip


def enforce_later(app):
    with get_db(app).unit_of_work() as session:
        return enforce(
            session,
            app.config["GOVERNANCE_POLICY_DIR"],
            app.config["GOVERNANCE_HOME"],
            TEST_ACTOR,
            now=utcnow() + LATER,
        )


def entries(app) -> dict[int, AuditEntry]:
    with get_db(app).unit_of_work() as session:
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.seq)).all()
        session.expunge_all()
        return {r.seq: r for r in rows}


def test_pruned_entries_keep_the_log_provable_and_bundles_verifying(app, tmp_path):
    log = runtime.of(app).audit_log
    log.tree = TreeCache()
    ours = log.append_many([event(i, "consumer-tax") for i in range(6)])
    theirs = log.append_many([event(i, "smb-accounting") for i in range(3)])
    system = log.append_many([event(9, None)])
    anchored = log.checkpoint().tree_size
    unanchored = log.append_many([event(10, "consumer-tax")])
    before = entries(app)
    # The domain's own creation is one of its entries too.
    expected = [s for s, r in before.items() if r.domain == "consumer-tax" and s <= anchored]
    assert set(ours) < set(expected)

    results = {(r.domain, r.kind): r for r in enforce_later(app)}
    assert results[("smb-accounting", "audit_entries")].count == 0  # its period is years
    result = results[("consumer-tax", "audit_entries")]
    assert result.count == len(expected) and result.ranges == ranges_of(expected)
    after = entries(app)
    for seq in expected:
        row = after[seq]
        assert row.pruned_at is not None and row.leaf_hash == before[seq].leaf_hash
        assert (row.principal, row.object, row.request_id, row.details) == ("-", "-", None, "{}")
        assert (row.time, row.action, row.domain) == (
            before[seq].time, before[seq].action, before[seq].domain,
        )  # fmt: skip
    for seq in (*theirs, *system, *unanchored):
        assert after[seq].pruned_at is None and after[seq].principal == before[seq].principal
    [prune] = [r for r in after.values() if r.action == "audit.prune"]
    assert prune.domain is None and json.loads(prune.details)["ranges"] == ranges_of(expected)
    assert not any(r.count for r in enforce_later(app) if r.kind == "audit_entries")

    with get_db(app).unit_of_work() as session:
        result = verify_log(session, log.signing_key.public_key())
        assert result.entries == len(after)
        out = tmp_path / "bundle.tar.gz"
        manifest = write_log_bundle(session, EntryFilter(), out, log)
    assert manifest["complete"] is False and manifest["pruned_entries"] == len(expected)
    report = verify_bundle(out, crypto.public_key_pem(log.signing_key.public_key()))
    assert report.tree_size == manifest["tree_size"]
    assert report.entries == manifest["tree_size"] - len(expected)

    # An insider who tombstones an entry outside retention: no pruning accounts for it.
    victim = theirs[0]
    with get_db(app).unit_of_work() as session:
        session.execute(
            sa.update(AuditEntry)
            .where(AuditEntry.seq == victim)
            .values(principal="-", object="-", request_id=None, details="{}", pruned_at=utcnow())
        )
        session.commit()
        with pytest.raises(VerificationError, match=f"entry {victim} has no content") as caught:
            verify_log(session, log.signing_key.public_key())
        assert caught.value.seq == victim


def forge_prune(app, log, victim: int, signature: str | None) -> None:
    """What an insider with write access to the database (not the log's key) can do: blank an
    anchored entry as retention would, append an `audit.prune` entry naming it, raise the
    head."""
    from governance.audit.service import append_events

    with get_db(app).unit_of_work() as session:
        session.execute(
            sa.update(AuditEntry)
            .where(AuditEntry.seq == victim)
            .values(principal="-", object="-", request_id=None, details="{}", pruned_at=utcnow())
        )
        details = {
            "domain": "smb-accounting",
            "kind": "audit_entries",
            "count": 1,
            "ranges": [[victim, victim]],
            "checkpoint": victim,
            "before": "2020-01-01",
        }
        if signature is not None:
            details["signature"] = signature
        forged = AuditEvent(
            principal="system:retention",
            action="audit.prune",
            object="audit",
            domain=None,
            decision="ok",
            policy_hash="0" * 64,
            request_id=None,
            details=details,
        )
        append_events(session, [forged])
        session.commit()


@pytest.mark.parametrize("signature", [None, "A" * 88], ids=["unsigned", "bad-signature"])
def test_a_forged_prune_fails_every_verifier(app, tmp_path, monkeypatch, signature):
    from governance.audit import service as audit_service
    from governance.flows import log_export as audit_export

    log = runtime.of(app).audit_log
    log.tree = TreeCache()
    theirs = log.append_many([event(i, "smb-accounting") for i in range(3)])
    log.checkpoint()
    forge_prune(app, log, theirs[1], signature)
    # The checkpoint verifies what it would sign, and refuses.
    with pytest.raises(VerificationError, match="does not account for what it blanks"):
        log.checkpoint()
    public = log.signing_key.public_key()
    with get_db(app).unit_of_work() as session:
        with pytest.raises(VerificationError, match="does not account for what it blanks"):
            verify_log(session, public)
        out = tmp_path / "bundle.tar.gz"
        with pytest.raises(VerificationError, match="does not account for what it blanks"):
            write_log_bundle(session, EntryFilter(), out, log)
        # An exporter that checked nothing (an older release) signs the forgery: the offline
        # verifier still refuses the bundle.
        monkeypatch.setattr(audit_service, "verify_tail", lambda *args: None)
        monkeypatch.setattr(
            audit_export,
            "verify_against_witnesses",
            lambda *a, **k: (SimpleNamespace(entries=0), []),  # it verified nothing
        )
        write_log_bundle(session, EntryFilter(), out, log)
    with pytest.raises(VerificationError, match="does not account for what it blanks"):
        verify_bundle(out, crypto.public_key_pem(public))


def test_a_real_prune_signature_cannot_be_reused_for_another_entry(app, tmp_path):
    log = runtime.of(app).audit_log
    log.tree = TreeCache()
    log.append_many([event(i, "consumer-tax") for i in range(3)])
    theirs = log.append_many([event(i, "smb-accounting") for i in range(2)])
    log.checkpoint()
    enforce_later(app)
    [prune] = [r for r in entries(app).values() if r.action == "audit.prune"]
    stolen = json.loads(prune.details)["signature"]
    forge_prune(app, log, theirs[0], stolen)
    with (
        get_db(app).unit_of_work() as session,
        pytest.raises(VerificationError, match="signature does not verify"),
    ):
        verify_log(session, log.signing_key.public_key())


def test_retention_will_not_prune_over_an_altered_entry(app):
    log = runtime.of(app).audit_log
    [seq] = log.append_many([event(1, "consumer-tax")])
    log.checkpoint()
    with get_db(app).unit_of_work() as session:
        session.execute(
            sa.update(AuditEntry).where(AuditEntry.seq == seq).values(principal="mallory")
        )
        session.commit()
    with pytest.raises(VerificationError, match=f"entry {seq} was altered"):
        enforce_later(app)
    assert entries(app)[seq].pruned_at is None


def uploaded_version(app, client, domain: str) -> int:
    steward = principal_token(app, {"consumer-tax": "casey", "smb-accounting": "sam"}[domain])
    dataset = create_dataset(client, steward, domain, f"returns-{domain}")
    response = client.post(
        f"/api/v1/datasets/{dataset}/versions",
        query_string={"tax_year": 2025},
        data=b'{"text": "Form 1040 line 1a"}\n',
        content_type="application/x-ndjson",
        headers=auth(steward),
    )
    assert response.status_code == 201, response.get_json()
    with get_db(app).unit_of_work() as session:
        uid = response.get_json()["uid"]
        return session.exec(select(DatasetVersion.id).where(DatasetVersion.uid == uid)).one()


def test_old_receipts_lose_their_samples_and_old_reports_go(app, client):
    home = Path(app.config["GOVERNANCE_HOME"])
    versions = {d: uploaded_version(app, client, d) for d in ("consumer-tax", "smb-accounting")}
    with get_db(app).unit_of_work() as session:
        tax = session.exec(select(Domain).where(Domain.name == "consumer-tax")).one()
        other = session.exec(select(Domain).where(Domain.name == "smb-accounting")).one()
        receipts = []
        for domain in (tax, other):
            receipt = ScanReceipt(
                version_id=versions[domain.name], domain_id=domain.id, rules_hash="r" * 64,
                content_hash="c" * 64, verdict="redacted", created_by="sam", records_total=3,
                samples=[{"text": "Client <PERSON> filed"}],
            )  # fmt: skip
            session.add(receipt)
            receipts.append(receipt)
        jobs = {
            "scan": Job(uid="a" * 32, kind="scan", domain="consumer-tax"),
            "running": Job(uid="b" * 32, kind="evaluate", domain="consumer-tax"),
            "other": Job(uid="c" * 32, kind="scan", domain="smb-accounting"),
            "export": Job(
                uid="d" * 32,
                kind="export",
                params={"domains": ["consumer-tax", "smb-accounting"], "format": "jsonl"},
            ),
        }
        for name, job in jobs.items():
            job.state = "running" if name == "running" else "succeeded"
            job.executor = "local"
            job.finished_at = None if name == "running" else utcnow()
            session.add(job)
        session.commit()
        receipt_ids = [r.id for r in receipts]
    exported = export_file(home, "d" * 32, "jsonl")
    exported.parent.mkdir(parents=True, exist_ok=True)
    exported.write_text("{}\n")

    results = {(r.domain, r.kind): r.count for r in enforce_later(app)}
    assert results[("consumer-tax", "receipts")] == 1
    assert results[("consumer-tax", "reports")] == 2
    assert results[("smb-accounting", "reports")] == 0  # a year: not yet
    with get_db(app).unit_of_work() as session:
        kept, pruned = (session.get(ScanReceipt, i) for i in reversed(receipt_ids))
        assert pruned.samples == [] and pruned.pruned_at is not None
        assert (pruned.verdict, pruned.records_total) == ("redacted", 3)
        assert kept.samples and kept.pruned_at is None
        left = set(session.exec(select(Job.uid)).all())
    assert left == {"b" * 32, "c" * 32} and not exported.exists()
    audited = [r for r in entries(app).values() if r.action == "retention.prune"]
    assert len(audited) == 1 and audited[0].domain == "consumer-tax"
