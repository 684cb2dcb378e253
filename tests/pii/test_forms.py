"""Each written form of personal data that support text uses, with values these tests make up
on the spot (seeded), must be covered by the scanner; clean tax text must stay untouched."""

from __future__ import annotations

import json
import logging
import random
import string
import subprocess
import sys

import pytest

from governance.config import DEFAULT_POLICY_DIR
from governance.pii import normalize
from governance.pii.rules import load_rules
from governance.pii.sanitize import residuals
from governance.pii.scanner import Scanner

WORDS = "zero one two three four five six seven eight nine".split()
rng = random.Random(1313)


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


@pytest.fixture(scope="module")
def rules():
    return load_rules(DEFAULT_POLICY_DIR, "smb-accounting")


def digits(n: int, first: str = "123456789") -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def ssn() -> str:
    return f"{rng.randint(101, 665)}{rng.randint(10, 99)}{rng.randint(1000, 9999)}"


def card() -> str:
    body = "5" + digits(14)
    for last in string.digits:
        number = body + last
        total = sum(
            (int(c) * 2 - 9 if int(c) * 2 > 9 else int(c) * 2) if i % 2 else int(c)
            for i, c in enumerate(reversed(number))
        )
        if total % 10 == 0:
            return number
    raise AssertionError


def name_pair() -> tuple[str, str]:
    first = rng.choice(["Chidinma", "Thuy", "Raghav", "Oksana", "Emeka", "Folasade", "Anh"])
    last = rng.choice(["Nwachukwu", "Tran", "Venkataraman", "Kovalenko", "Okonkwo", "Pham"])
    return first, last


def aba() -> str:
    while True:
        head = "0" + digits(7, "123")
        for last in string.digits:
            value = head + last
            weights = [3, 7, 1] * 3
            if sum(int(c) * w for c, w in zip(value, weights, strict=True)) % 10 == 0:
                return value


def forms() -> list[tuple[str, str, str]]:
    """(form, text, value) for every form the issue lists."""
    s = ssn()
    c = card()
    a = digits(12)
    first, last = name_pair()
    cases = [
        ("ssn digit by digit", "my ssn is {v} ok", " ".join(WORDS[int(d)] for d in s)),
        ("ssn broken over lines", "SSN: {v}", f"{s[:3]}-{s[3:5]}-\n{s[5:]}"),
        ("ssn mixed separators", "it is {v} I think", f"{s[:3]} {s[3:5]}-{s[5:]}"),
        ("ein without dash", "our ein {v} please", f"{rng.randint(20, 27)}{digits(7)}"),
        ("account in groups", "acct {v} at the bank", " ".join([a[:4], a[4:8], a[8:]])),
        ("routing number bare", "direct deposit to {v} thanks", aba()),
        (
            "card with dots",
            "paid with {v} yesterday",
            ".".join(c[i : i + 4] for i in (0, 4, 8, 12)),
        ),
        ("card across lines", "card:\n{v}\nexp 09/29", f"{c[:8]}\n{c[8:]}"),
        ("email at dot", "write to {v} soon", f"{first.lower()} at {last.lower()}mail dot com"),
        ("email brackets", "mail {v}", f"{first.lower()}[at]example[dot]org"),
        (
            "phone spoken",
            "call me on {v} tonight",
            " ".join(WORDS[int(d)] for d in digits(10, "2345")),
        ),
        ("date with month abbreviation", "I was born {v}.", f"{rng.randint(10, 28)}-Sep-1965"),
        ("date ordinal", "DOB is the {v}", f"{rng.randint(4, 20)}th of october 1954"),
        ("date spelled year", "born may 17, {v}", "nineteen ninety eight"),
        ("rural route", "mail to {v} please", f"RR {rng.randint(1, 9)} Box {rng.randint(10, 999)}"),
        ("po box short", "send it to {v}, Austin TX", f"POB {rng.randint(10, 9999)}"),
        ("highway contract box", "address: {v}", f"HC {rng.randint(1, 99)} Box {digits(4)}"),
        ("spanish street", "we live at {v}, Santa Fe", f"{digits(4)} Paseo del Norte"),
        ("lower-case name", "my client {v} called", f"{first} {last}".lower()),
        ("upper-case name", "account holder: {v}.", f"{first} {last}".upper()),
        ("names that are words", "{v} called about her return.", "Hope Cash"),
        ("passport", "passport no. {v}", f"{rng.choice('CEX')}{digits(8)}"),
        ("driver's licence", "driver's license {v}", f"{rng.choice('DFS')}{digits(3)}-{digits(4)}"),
        ("iban lower case", "iban {v}", "de89 3704 0044 0532 0130 00"),
        ("bare identifier", "reference {v} on the letter", digits(11)),
    ]
    return [(form, template.replace("{v}", value), value) for form, template, value in cases]


@pytest.mark.parametrize(("form", "text", "value"), forms(), ids=[f[0] for f in forms()])
def test_every_form_is_covered(scanner, rules, form, text, value):
    [findings] = list(scanner.scan_texts([text], rules))
    start = text.index(value)
    covered = set()
    for f in findings:
        covered.update(range(max(start, f.start), min(start + len(value), f.end)))
    assert len(covered) * 2 >= len(value), (
        form,
        [(f.entity_type, f.start, f.end) for f in findings],
    )


def test_labels_are_the_most_specific_the_evidence_supports(scanner, rules):
    def label(text: str) -> str:
        [findings] = list(scanner.scan_texts([text], rules))
        assert len(findings) == 1, findings
        return findings[0].entity_type

    s = ssn()
    assert label(f"my ITIN is 9{s[1:3]}-{rng.randint(70, 88)}-{s[5:]}") == "US_ITIN"
    assert label(f"ssn {s[:3]}-{s[3:5]}-{s[5:]}") == "US_SSN"
    # Nine digits with nothing to say which tax id they are: not a guess.
    assert label(f"the number is {s[:3]}{s[3:5]}{s[5:]} on file") == "US_TAX_ID"
    assert label(f"routing number {aba()}") == "ABA_ROUTING_NUMBER"


@pytest.mark.parametrize(
    "text",
    [
        "Call the IRS at 1-800-829-1040 about Schedule K-1.",
        "Line 11 AGI 143,075 and line 15 taxable income 128,075.",
        "Your e-file submission ID 30012420241234567890 was accepted.",
        "Madrid office reimbursements are reported in dollars.",
        "Bill payments for the rental go on Schedule E, line 9.",
        "See Pub. 501 and Rev. Proc. 2023-34; the deadline is 04/15/2026.",
        "The refund of $12,345.67 was deposited on 2026-03-02.",
    ],
)
def test_tax_references_are_not_redacted(scanner, rules, text):
    [findings] = list(scanner.scan_texts([text], rules))
    assert [text[f.start : f.end] for f in findings] == []


def test_the_view_maps_every_finding_back_to_the_original():
    view = normalize.spelled_numbers(normalize.View.of("ssn five three one, four four end"))
    assert view.text == "ssn 531-44 end"
    assert view.original(4, 10) == (4, 29)
    joined = normalize.digit_runs(normalize.View.of("card 4111 2222\n  3333 4444 ok"))
    assert joined.text == "card 4111 2222 3333 4444 ok"
    start = joined.text.index("4111")
    assert joined.original(start, start + 19) == (5, 26)


def test_a_value_split_between_prompt_and_completion_is_found(scanner, rules):
    s = ssn()
    record = {"prompt": f"Client SSN: {s[:3]}-{s[3:5]}-", "completion": f"{s[5:]} is on file."}
    [(index, findings)] = list(scanner.scan_records([record], rules))
    fields = {f.field for f in findings if f.entity_type == "US_SSN"}
    assert index == 0 and fields == {"prompt", "completion"}


def test_residual_pass_flags_what_redaction_left(scanner, rules):
    assert residuals("Ask about <US_SSN> on line 9 of Form 1040.", rules, scanner.names) == {}
    left = residuals(f"ref {digits(6)} and id X{digits(5)}", rules, scanner.names)
    assert left.get("DIGITS") and left.get("MIXED_ID")
    assert residuals("write to jdoe at host dot com", rules, scanner.names) == {"EMAIL": 1}


def test_nlp_libraries_log_no_text_at_any_level(scanner, rules, caplog):
    secret = f"{ssn()[:3]}-55-{digits(4)}"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("presidio-analyzer").debug("value %s", secret)
        list(scanner.scan_texts([f"my ssn is {secret}"], rules))
    assert secret not in caplog.text


COLD = """
import json, sys, time
started = time.process_time()
from governance.config import DEFAULT_POLICY_DIR
from governance.pii.rules import load_rules
from governance.pii.scanner import Scanner
[found] = list(Scanner().scan_texts(["my ssn is 536-22-8741"], load_rules(DEFAULT_POLICY_DIR)))
print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "found": [f.entity_type for f in found]}))
"""


def test_the_scanner_starts_without_torch_or_transformers():
    result = subprocess.run(
        [sys.executable, "-c", COLD], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "torch": False,
        "transformers": False,
        "found": ["US_SSN"],
    }
