"""Scanning stored versions: receipts, the sanitized view, the gate, and incremental rescans."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from governance import runtime
from governance.audit.models import AuditEntry
from governance.datasets.models import DatasetVersion
from governance.db import get_db
from governance.errors import Conflict
from governance.jobs.models import Job
from governance.pii import scanning
from governance.pii import service as pii
from governance.pii.models import Verdict
from governance.pii.rules import load_rules
from governance.pii.scanner import Scanner
from tests.factories import auth, create_dataset, make_domain, principal_token, scan_receipt

SSN = "536-22-8741"
CARD = "4111 1111 1111 1111"
PII_RECORDS = [
    {"text": f"My SSN is {SSN}; can I e-file Form 1040 for tax year 2025?"},
    {"prompt": "Who can claim the child tax credit?", "completion": "See Schedule 8812."},
    {"text": f"Charge the fee to card {CARD} please."},
    {"text": "Maria Gonzalez asks whether line 12 allows the standard deduction."},
]
CLEAN_RECORDS = [
    {"text": f"Question {i}: how does Schedule C line {i % 30} work?"} for i in range(1, 41)
]


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def jsonl(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.fixture
def world(app, client, scanner):
    runtime.of(app).use(scanner=scanner)
    make_domain(app, "consumer-tax")
    tokens = {n: principal_token(app, n) for n in ("casey", "priya", "sam")}
    tokens["dataset"] = create_dataset(client, tokens["casey"], "consumer-tax", "returns")
    return tokens


def upload(client, world, records, year=2025) -> int:
    response = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": year},
        data=jsonl(records),
        content_type="application/x-ndjson",
        headers=auth(world["casey"]),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["version"]


def scan(client, world, number, who="casey"):
    return scan_receipt(
        client, f"/api/v1/datasets/{world['dataset']}/versions/{number}/scans", auth(world[who])
    )


def test_scan_redacts_drops_and_never_shows_raw_values(app, client, world):
    number = upload(client, world, PII_RECORDS)
    response = scan(client, world, number)
    assert response.status_code == 200, response.get_json()
    receipt = response.get_json()
    assert receipt["verdict"] == Verdict.REDACTED
    assert receipt["counts"]["US_SSN"] == {"text": 1}
    assert receipt["records_total"] == 4 and receipt["records_dropped"] == 1  # the card record
    assert receipt["sanitized_records"] == 3 and receipt["current_rules"] is True
    assert {"scanner", "presidio_analyzer", "spacy", "model"} <= set(receipt["scanner"])
    listed = client.get(
        f"/api/v1/datasets/{world['dataset']}/versions/{number}/scans", headers=auth(world["priya"])
    )
    text = listed.get_data(as_text=True)
    assert SSN not in text and "4111" not in text and "Maria Gonzalez" not in text
    assert "<US_SSN>" in text
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        rules = load_rules(app.config["GOVERNANCE_POLICY_DIR"], "consumer-tax")
        passing = pii.require_trainable(session, version, rules)
        sanitized = list(
            pii.iter_sanitized(session, runtime.of(app).keyring, runtime.of(app).store, passing)
        )
    flat = json.dumps(sanitized)
    assert SSN not in flat and CARD not in flat and "Maria Gonzalez" not in flat
    assert sanitized[0]["text"].startswith("My SSN is <US_SSN>;")
    assert "Form 1040" in sanitized[0]["text"] and "2025" in sanitized[0]["text"]
    # Raw values never reach disk in the clear either.
    for path in Path(app.config["GOVERNANCE_HOME"]).rglob("*"):
        if path.is_file():
            assert SSN.encode() not in path.read_bytes()


def test_the_gate_needs_a_passing_receipt_under_current_rules(app, client, world, tmp_path):
    number = upload(client, world, CLEAN_RECORDS)
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        rules = load_rules(app.config["GOVERNANCE_POLICY_DIR"], "consumer-tax")
        with pytest.raises(Conflict, match="no scan"):
            pii.require_trainable(session, version, rules)
    assert scan(client, world, number).get_json()["verdict"] == Verdict.PASS
    changed = tmp_path / "policies"
    changed.mkdir()
    source = Path(app.config["GOVERNANCE_POLICY_DIR"]) / "pii.yaml"
    (changed / "pii.yaml").write_text(source.read_text() + "\n# tightened\n")
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        pii.require_trainable(session, version, rules)
        with pytest.raises(Conflict, match="no scan under the current"):
            pii.require_trainable(session, version, load_rules(changed, "consumer-tax"))


class FailingScanner(Scanner):
    """A real scanner whose analysis breaks mid-way, as a crashed model would."""

    def scan_texts(self, texts, rules):
        raise RuntimeError("model crashed")


def test_a_scanner_failure_fails_closed(app, client, world, scanner):
    number = upload(client, world, PII_RECORDS)
    broken = FailingScanner.__new__(FailingScanner)
    broken.__dict__.update(scanner.__dict__)
    runtime.of(app).use(scanner=broken)
    receipt = scan(client, world, number).get_json()
    assert receipt["verdict"] == Verdict.ERROR and receipt["sanitized_records"] == 0
    # The job that ran it is not reported as a success.
    with get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == "scan")).scalar_one()
        assert job.state == "failed" and "the scan failed" in job.error
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        rules = load_rules(app.config["GOVERNANCE_POLICY_DIR"], "consumer-tax")
        with pytest.raises(Conflict, match="verdict error"):
            pii.require_trainable(session, version, rules)
    staging = Path(app.config["GOVERNANCE_HOME"]) / "blobs" / ".staging"
    assert not list(staging.glob("*"))


class ProbingScanner(Scanner):
    """A real scanner that, before each block after the first, checks that another writer
    could take SQLite's write lock at once: a scan must not hold it while it reads."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.blocks = 0
        self.probes: list[str] = []

    def scan_texts(self, texts, rules):
        self.blocks += 1
        if self.blocks > 1:
            probe = sqlite3.connect(self.database, timeout=0.2, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                self.probes.append("free")
            except sqlite3.OperationalError as exc:
                self.probes.append(str(exc))
            finally:
                probe.close()
        return super().scan_texts(texts, rules)


def test_a_scan_never_holds_the_write_lock_while_it_reads(app, client, world, scanner, monkeypatch):
    """Other writers (job progress, audit entries, uploads) never wait on a running scan: its
    cache rows commit on their own, block by block, and its results commit at the end."""
    if get_db(app).engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL writers lock rows, not the whole database")
    number = upload(client, world, CLEAN_RECORDS)
    monkeypatch.setattr(scanning, "CACHE_BATCH", 5)
    database = Path(get_db(app).engine.url.database)
    probing = ProbingScanner.__new__(ProbingScanner)
    probing.__dict__.update(scanner.__dict__)
    ProbingScanner.__init__(probing, database)
    runtime.of(app).use(scanner=probing)
    receipt = scan(client, world, number).get_json()
    assert receipt["verdict"] == Verdict.PASS, receipt
    # Every block after the first was probed (and the canaries' measurement after them).
    assert len(probing.probes) >= len(CLEAN_RECORDS) // 5 - 1
    assert set(probing.probes) == {"free"}
    # And the cache it wrote block by block serves the next scan.
    assert scan(client, world, number).get_json()["records_from_cache"] == len(CLEAN_RECORDS)


def test_rescans_skip_records_already_scanned_under_the_same_rules(app, client, world):
    first = upload(client, world, CLEAN_RECORDS)
    assert scan(client, world, first).get_json()["records_from_cache"] == 0
    changed = CLEAN_RECORDS[:36] + [{"text": f"New question {i} for 2026"} for i in range(4)]
    second = upload(client, world, changed, year=2026)
    receipt = scan(client, world, second).get_json()
    assert receipt["records_total"] == 40 and receipt["records_from_cache"] == 36


def sanitized(app, number) -> list[dict]:
    with get_db(app).unit_of_work() as session:
        version = session.exec(
            sa.select(DatasetVersion).where(DatasetVersion.number == number)
        ).scalar_one()
        receipt = pii.latest_receipt(session, version)
        keyring, store = runtime.of(app).keyring, runtime.of(app).store
        return list(pii.iter_sanitized(session, keyring, store, receipt))


def test_the_cache_is_per_record_text_so_metadata_changes_are_not_rescanned(app, client, world):
    qa = [
        {
            "prompt": f"Question {i}: what goes on Schedule C line {i}?",
            "completion": f"Answer {i} for 2025.",
            "metadata": {"tax_year": 2025},
        }
        for i in range(1, 21)
    ]
    first = upload(client, world, qa)
    assert scan(client, world, first).get_json()["records_from_cache"] == 0
    # Next year: every record's metadata changes, and four completions now carry an SSN.
    refreshed = [{**r, "metadata": {"tax_year": 2026}} for r in qa]
    for r in refreshed[:4]:
        r["completion"] = f"Ask the preparer; client SSN {SSN} is on file."
    second = upload(client, world, refreshed, year=2026)
    receipt = scan(client, world, second).get_json()
    assert receipt["records_total"] == 20 and receipt["records_from_cache"] == 16
    assert receipt["counts"] == {"US_SSN": {"completion": 4}}
    rows = sanitized(app, second)
    assert [r["completion"] for r in rows[:4]] == [
        "Ask the preparer; client SSN <US_SSN> is on file."
    ] * 4
    # Metadata never reaches the sanitized view: it is stripped, not scanned.
    assert rows[4:] == [{k: v for k, v in r.items() if k != "metadata"} for r in refreshed[4:]]


def test_a_parallel_scan_finds_exactly_what_one_process_finds(scanner):
    from governance.pii.scanner import ParallelScanner
    from governance.pii.synthetic import generate

    rules = load_rules(str(Path(__file__).parents[2] / "policies"), "consumer-tax")
    texts = [g["text"] for g in generate(300, seed=3)]
    alone = list(scanner.scan_texts(texts, rules))
    with ParallelScanner(scanner.model_name, processes=2, chunk=16) as parallel:
        assert parallel.versions == scanner.versions
        spread = list(parallel.scan_texts(iter(texts), rules))
    assert spread == alone and sum(map(len, alone)) > 200


def test_only_stewards_may_scan_and_strangers_see_nothing(client, world):
    number = upload(client, world, CLEAN_RECORDS)
    assert scan(client, world, number, who="priya").status_code == 404
    assert scan(client, world, number, who="sam").status_code == 404
    assert (
        client.get(
            f"/api/v1/datasets/{world['dataset']}/versions/{number}/scans",
            headers=auth(world["sam"]),
        ).status_code
        == 404
    )


def quarantine(client, world, number, who="casey"):
    return client.get(
        f"/api/v1/datasets/{world['dataset']}/versions/{number}/quarantine",
        headers=auth(world[who]),
    )


def test_residuals_are_quarantined_until_a_steward_decides(app, client, world):
    # An internal reference no rule names: redacted by nothing, caught by the residual pass.
    records = [*CLEAN_RECORDS[:15], {"text": "Ticket ref ZX-44817 about Form 1040 line 9."}]
    number = upload(client, world, records)
    receipt = scan(client, world, number).get_json()
    assert receipt["records_quarantined"] == 1 and receipt["sanitized_records"] == 15
    # 1 of 16 is above the 5% the domain allows: the version may not train.
    assert receipt["verdict"] == Verdict.FAILED
    assert [r["code"] for r in receipt["reasons"]] == ["quarantine_share"]
    [held] = quarantine(client, world, number).get_json()["items"]
    assert held["record_index"] == 15 and "44817" not in json.dumps(held)
    assert held["preview"]["text"].startswith("Ticket ref ZX-#####")
    # Only a steward of the domain decides; a reviewer is refused.
    path = f"/api/v1/datasets/{world['dataset']}/versions/{number}/quarantine/15"
    assert (
        client.post(path, json={"decision": "keep"}, headers=auth(world["priya"])).status_code
        == 404
    )
    bad = client.post(path, json={"decision": "maybe"}, headers=auth(world["casey"]))
    assert bad.status_code == 422
    kept = client.post(path, json={"decision": "keep"}, headers=auth(world["casey"]))
    assert kept.status_code == 200 and kept.get_json()["decided_by"] == "casey"
    again = scan(client, world, number).get_json()
    assert again["records_kept"] == 1 and again["sanitized_records"] == 16
    assert again["verdict"] == Verdict.PASS and again["reasons"] == []
    with get_db(app).unit_of_work() as session:
        decided = session.exec(
            sa.select(AuditEntry).where(AuditEntry.action == "quarantine.keep")
        ).scalar_one()
        assert decided.principal == "casey"


def test_every_receipt_measures_canary_recall_and_the_gate_uses_it(app, client, world, tmp_path):
    number = upload(client, world, CLEAN_RECORDS)
    receipt = scan(client, world, number).get_json()
    assert receipt["canary_recall"] == 1.0
    assert receipt["canaries"]["US_SSN"][1] >= 4 and receipt["canaries"]["PERSON"][1] >= 3
    # A rules file whose allow-list explains every digit blinds the scanner to identifiers:
    # the canaries show it and the gate refuses the version.
    policies = tmp_path / "policies"
    policies.mkdir()
    source = Path(app.config["GOVERNANCE_POLICY_DIR"]) / "pii.yaml"
    text = source.read_text().replace(
        "  allow:\n", "  allow:\n    - name: everything\n      pattern: '[0-9][0-9 .,-]*'\n", 1
    )
    (policies / "pii.yaml").write_text(text)
    app.config["GOVERNANCE_POLICY_DIR"] = str(policies)
    for name in ("policy.csv", "model.conf", "approvals.yaml", "domains.yaml"):
        original = Path(source.parent) / name
        if original.exists():
            (policies / name).write_bytes(original.read_bytes())
    blind = scan(client, world, number).get_json()
    assert blind["canary_recall"] < 0.95 and blind["verdict"] == Verdict.FAILED
    assert [r["code"] for r in blind["reasons"]] == ["canary_recall"]
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        with pytest.raises(Conflict, match="verdict failed"):
            pii.require_trainable(session, version, load_rules(policies, "consumer-tax"))


def planted_records(rng) -> tuple[list[dict], list[str]]:
    """Support records carrying values in the forms people write them (made up here)."""
    words = "zero one two three four five six seven eight nine".split()

    def digits(n: int) -> str:
        return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))

    values, records = [], []
    for i in range(40):
        ssn = f"{rng.randint(101, 665)}{rng.randint(10, 99)}{digits(4)}"
        account = digits(12)
        forms = [
            (f"my ssn is {' '.join(words[int(d)] for d in ssn)}", ssn),
            (f"SSN: {ssn[:3]}-{ssn[3:5]}-\n{ssn[5:]}", ssn),
            (f"acct {account[:4]} {account[4:8]} {account[8:]}", account),
            (f"our ein {rng.randint(20, 27)}{digits(7)}", None),
            (f"reach me at kwame{i} at fastmail dot com", f"kwame{i}"),
        ]
        text, value = forms[i % len(forms)]
        if value is None:
            value = text.rsplit(" ", 1)[1]
        values.append(value)
        records.append({"prompt": f"Question {i} about Schedule C.", "completion": text + "."})
    # A value split between prompt and completion.
    ssn = f"{rng.randint(101, 665)}{rng.randint(10, 99)}{digits(4)}"
    records.append(
        {"prompt": f"Client SSN: {ssn[:3]}-{ssn[3:5]}-", "completion": f"{ssn[5:]} is on file."}
    )
    values.append(ssn)
    return records, values


def test_no_planted_value_reaches_the_sanitized_view(app, client, world):
    import random

    records, values = planted_records(random.Random(2026))
    number = upload(client, world, records)
    receipt = scan(client, world, number).get_json()
    assert receipt["records_total"] == len(records)
    text = json.dumps(sanitized(app, number))
    squeezed = "".join(c for c in text if c.isalnum())
    leaked = [v for v in values if v in text or v in squeezed]
    assert leaked == []


def test_cache_keys_are_keyed_hashes_and_die_with_the_version(app, client, world):
    import hashlib

    from governance.pii.models import ScanCacheEntry

    number = upload(client, world, PII_RECORDS)
    assert scan(client, world, number).status_code == 200
    with get_db(app).unit_of_work() as session:
        keys = {row.text_hash for row in session.exec(sa.select(ScanCacheEntry)).scalars()}
    plain = {hashlib.sha256(r["text"].encode()).hexdigest() for r in PII_RECORDS if "text" in r}
    assert keys and not keys & plain  # a guessed text cannot be confirmed from the database
    deleted = client.delete(
        f"/api/v1/datasets/{world['dataset']}/versions/{number}",
        json={"reason": "withdrawn"},
        headers=auth(world["casey"]),
    )
    assert deleted.status_code == 200
    with get_db(app).unit_of_work() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(ScanCacheEntry)).scalar() == 0
        receipt = session.exec(sa.select(pii.ScanReceipt)).scalars().first()
        assert receipt.sanitized_wrapped_key is None and receipt.sanitized_blob_key is None


def labelling_policies(app, tmp_path, sample: int, bound: float) -> Path:
    """A copy of the shipped policies whose consumer-tax rules draw a labelling sample."""
    policies = tmp_path / "policies"
    policies.mkdir()
    source = Path(app.config["GOVERNANCE_POLICY_DIR"])
    for original in source.iterdir():
        if original.is_file():
            (policies / original.name).write_bytes(original.read_bytes())
    text = (source / "pii.yaml").read_text()
    text = text.replace(
        "  consumer-tax:\n",
        f"  consumer-tax:\n    gate:\n      label_sample: {sample}\n"
        f"      recall_lower_bound: {bound}\n",
        1,
    )
    (policies / "pii.yaml").write_text(text)
    app.config["GOVERNANCE_POLICY_DIR"] = str(policies)
    return policies


def test_a_steward_labelled_sample_estimates_recall_and_gates_the_approval(
    app, client, world, tmp_path
):
    import random

    rng = random.Random(77)
    policies = labelling_policies(app, tmp_path, sample=6, bound=0.5)
    # Records with values the scanner finds, and one whose name it cannot know.
    records = [
        {
            "text": f"My SSN is {rng.randint(101, 665)}-{rng.randint(10, 99)}-"
            f"{rng.randint(1000, 9999)} for the 1040."
        }
        for _ in range(5)
    ]
    records.append({"text": "the cat of qqzx vvbn sat on the 1099"})
    number = upload(client, world, records)
    receipt = scan(client, world, number).get_json()
    assert len(receipt["label_sample"]) == 6
    assert receipt["recall_estimate"]["labelled"] == 0
    base = f"/api/v1/datasets/{world['dataset']}/versions/{number}/labels"
    sample = client.get(base, headers=auth(world["casey"])).get_json()
    assert [i["position"] for i in sample["items"]] == [
        drawn["position"] for drawn in receipt["label_sample"]
    ]
    # Digits are shown as #, placeholders counted.
    assert not any(ch.isdigit() for i in sample["items"] for ch in json.dumps(i["text"]))
    assert sum(i["redacted"] for i in sample["items"]) == 5
    # A reviewer may not label; a label outside the sample is a 404.
    assert (
        client.post(f"{base}/0", json={"missed": 0}, headers=auth(world["priya"])).status_code
        == 404
    )
    assert (
        client.post(f"{base}/99", json={"missed": 0}, headers=auth(world["casey"])).status_code
        == 404
    )
    bad = client.post(f"{base}/0", json={"missed": -1}, headers=auth(world["casey"]))
    assert bad.status_code == 422
    # The approval is refused until every sampled record is labelled.
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        stored = pii.latest_receipt(session, version)
        with pytest.raises(Conflict, match="labelled 0 of the 6"):
            pii.require_recall(stored, load_rules(policies, "consumer-tax"))
    for item in sample["items"]:
        missed = 2 if item["redacted"] == 0 else 0  # the record with two unknown names
        answer = client.post(
            f"{base}/{item['position']}", json={"missed": missed}, headers=auth(world["casey"])
        )
        assert answer.status_code == 200, answer.get_json()
    figures = answer.get_json()["estimate"]
    assert figures["complete"] and figures["redacted"] == 5 and figures["missed"] == 2
    assert figures["recall"] == round(5 / 7, 4)
    # Wilson's 95% lower bound for 5 of 7 (computed by hand: 0.3589).
    assert figures["recall_lower_bound"] == pytest.approx(0.3589, abs=1e-3)
    assert figures["records_with_miss"] == 1
    with get_db(app).unit_of_work() as session:
        version = session.exec(sa.select(DatasetVersion)).scalar_one()
        stored = pii.latest_receipt(session, version)
        with pytest.raises(Conflict, match=r"lower bound of 0\.3589"):
            pii.require_recall(stored, load_rules(policies, "consumer-tax"))
        labels = (
            session.exec(sa.select(AuditEntry).where(AuditEntry.action == "scan.label"))
            .scalars()
            .all()
        )
        assert len(labels) == 6 and {e.principal for e in labels} == {"casey"}
    # The sampled texts are sealed under the sanitized view's key and go with the version.
    deleted = client.delete(
        f"/api/v1/datasets/{world['dataset']}/versions/{number}",
        json={"reason": "withdrawn"},
        headers=auth(world["casey"]),
    )
    assert deleted.status_code == 200
    # What was derived from the deleted version is gone: its labels answer 410.
    after = client.get(base, headers=auth(world["casey"]))
    assert after.status_code == 410 and after.get_json()["error"]["code"] == "gone"
    with get_db(app).unit_of_work() as session:
        stored = session.exec(sa.select(pii.ScanReceipt)).scalars().first()
        assert stored.label_sealed is None and stored.recall_estimate["complete"]


def test_a_quarantine_decision_keeps_its_comment_and_the_held_span(app, client, world):
    records = [*CLEAN_RECORDS[:15], {"text": "Ticket ref ZX-44817 about Form 1040 line 9."}]
    number = upload(client, world, records)
    scan(client, world, number)
    [held] = quarantine(client, world, number).get_json()["items"]
    spans = {span["kind"]: span["span"] for span in held["spans"]}
    assert spans["MIXED_ID"] == "ZX-#####" and "44817" not in json.dumps(spans)
    assert "44817" not in json.dumps(held)
    path = f"/api/v1/datasets/{world['dataset']}/versions/{number}/quarantine/15"
    kept = client.post(
        path,
        json={"decision": "keep", "comment": "an internal ticket"},
        headers=auth(world["casey"]),
    )
    assert kept.status_code == 200 and kept.get_json()["comment"] == "an internal ticket"
