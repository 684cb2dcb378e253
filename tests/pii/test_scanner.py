"""The PII scanner on tax text: Presidio's recognizers plus the tax ones, rules, allow-lists,
and no network at any point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from governance.config import DEFAULT_POLICY_DIR
from governance.pii.rules import PiiRulesError, load_rules
from governance.pii.scanner import Scanner


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


@pytest.fixture(scope="module")
def rules():
    return load_rules(DEFAULT_POLICY_DIR)


def found(scanner, rules, text: str) -> dict[str, str]:
    [findings] = list(scanner.scan_texts([text], rules))
    return {f.entity_type: text[f.start : f.end] for f in findings}


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("My SSN is 536-22-8741, please file for me.", "US_SSN", "536-22-8741"),
        ("Our EIN is 84-2917365 for the LLC.", "US_EIN", "84-2917365"),
        ("Direct deposit: routing number 021000021 please.", "ABA_ROUTING_NUMBER", "021000021"),
        ("Send it to checking account 4438291057 at my bank.", "US_BANK_NUMBER", "4438291057"),
        ("I was born on 03/14/1985 in Ohio.", "DATE_OF_BIRTH", "03/14/1985"),
        (
            "Email me at jane.doe@example.com about the refund.",
            "EMAIL_ADDRESS",
            "jane.doe@example.com",
        ),
        ("Call me at (415) 555-0132 after noon.", "PHONE_NUMBER", "(415) 555-0132"),
        (
            "Mail the 1099 to 742 Evergreen Terrace, Springfield, IL 62704 please.",
            "STREET_ADDRESS",
            "742 Evergreen Terrace, Springfield, IL 62704",
        ),
        ("Can Maria Gonzalez claim her nephew as a dependent?", "PERSON", "Maria Gonzalez"),
        ("My ITIN is 912-78-1234 and I am not a resident.", "US_ITIN", "912-78-1234"),
    ],
)
def test_tax_pii_is_found(scanner, rules, text, entity, value):
    assert found(scanner, rules, text).get(entity) == value


@pytest.mark.parametrize(
    "text",
    [
        "Form 1040 line 1a shows $52,000 of wages for tax year 2025.",
        "Report it on Schedule C line 31 and carry it to Form 1040, lines 8 and 9.",
        "The standard deduction for 2025 is $15,000 for single filers.",
        "Use Form W-2 box 12 code DD and Form 1099-NEC for contractors.",
    ],
)
def test_tax_text_without_pii_yields_nothing(scanner, rules, text):
    assert found(scanner, rules, text) == {}


def test_checksums_and_context_are_required(scanner, rules):
    # Fails the ABA checksum: not a routing number.
    assert "ABA_ROUTING_NUMBER" not in found(scanner, rules, "routing number 021000022")
    # A date with no word saying it is a birth date is not a date of birth.
    assert "DATE_OF_BIRTH" not in found(scanner, rules, "The deadline moved to 04/15/2026.")
    # A long number with no word about accounts is not an account number.
    assert "US_BANK_NUMBER" not in found(scanner, rules, "Order 4438291057 shipped today.")
    # An EIN needs a prefix the IRS assigns.
    assert "US_EIN" not in found(scanner, rules, "Our EIN is 07-2917365 for the LLC.")


def test_rules_resolve_per_domain_and_change_the_hash(tmp_path):
    default = load_rules(DEFAULT_POLICY_DIR)
    consumer = load_rules(DEFAULT_POLICY_DIR, "consumer-tax")
    assert default.rule_for("CREDIT_CARD").action == "replace"
    assert consumer.rule_for("CREDIT_CARD").action == "drop"
    assert default.hash != consumer.hash
    assert load_rules(DEFAULT_POLICY_DIR, "no-such-domain").hash == default.hash
    (tmp_path / "pii.yaml").write_text("default:\n  entities:\n    US_SSN: {action: shred}\n")
    with pytest.raises(PiiRulesError, match="unknown action"):
        load_rules(tmp_path)


NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from governance.config import DEFAULT_POLICY_DIR
from governance.pii.rules import load_rules
from governance.pii.scanner import Scanner
[findings] = list(Scanner().scan_texts(
    ["Write to jane.doe@example.co.uk or visit https://example.com/page"],
    load_rules(DEFAULT_POLICY_DIR)))
print(sorted(f.entity_type for f in findings))
"""


def test_scanning_needs_no_network():
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['EMAIL_ADDRESS']"


def test_cli_prints_findings_as_jsonl_without_values(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(
        json.dumps({"text": "Form 1040 question."})
        + "\n"
        + json.dumps({"prompt": "My SSN is 536-22-8741.", "completion": "Thanks, Maria Gonzalez."})
        + "\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "governance.cli", "pii", "scan", str(data), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "GOVERNANCE_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {
        "record": 1,
        "field": "prompt",
        "start": 10,
        "end": 21,
        "entity_type": "US_SSN",
    }.items() <= next(x for x in lines if x["entity_type"] == "US_SSN").items()
    assert any(x["field"] == "completion" and x["entity_type"] == "PERSON" for x in lines)
    assert "536-22-8741" not in result.stdout


def test_cli_redact_prints_what_a_worker_would_receive(tmp_path):
    data = tmp_path / "in.jsonl"
    records = [
        {
            "prompt": "Client SSN: 536-22-",
            "completion": "8741 is on file.",
            "metadata": {"note": "jane at example dot com"},
        },
        {"text": "Form 1040 line 11 shows $52,000."},
        {"text": "Ticket ref QK-55190 about line 9."},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = subprocess.run(
        [sys.executable, "-m", "governance.cli", "pii", "redact", str(data), "--domain", "x"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "GOVERNANCE_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"prompt": "Client SSN: <US_SSN>", "completion": "<US_SSN> is on file."},
        {"text": "Form 1040 line 11 shows $52,000."},
    ]
    assert "record 2: held for a steward (residual DIGITS 1, MIXED_ID 1)" in result.stderr
    assert "55190" not in result.stderr and "jane" not in result.stdout


def test_recognizers_run_in_registration_order(scanner):
    """Presidio gathers a request's recognizers in a set; where two find the same span with
    the same score it keeps the first one's finding, so an order that changed from process to
    process changed scans' findings. The order is the registration order, structure first."""
    registry = scanner.analyzer.registry
    entities = sorted(scanner.supported)
    for _ in range(3):
        chosen = registry.get_recognizers(language="en", entities=entities)
        assert chosen == [r for r in registry.recognizers if r in chosen]
    assert chosen[0].name == "NamePositionRecognizer"


def test_a_dropped_gazetteer_is_freed_whatever_it_looked_up():
    """A runner loads a fresh scanner every 50,000 texts and drops the old one. A cache on the
    gazetteer's method used to be the class's, and its keys kept every gazetteer a process had
    built alive: 2.8 GiB after 10^6 records in one runner."""
    import gc
    import weakref

    from governance.pii.recognizers import NameGazetteerRecognizer

    gazetteer = NameGazetteerRecognizer()
    assert gazetteer.strength("Tsegaye") == 2 and gazetteer.strength("tax") == 0
    dropped = weakref.ref(gazetteer)
    del gazetteer
    gc.collect()
    assert dropped() is None
