"""Every scan measures its own recall: synthetic canaries planted in the version's own text.

Before the receipt is written, a sample of the version's records gets one sentence each that
carries a synthetic value of one form the rules cover (an SSN read out digit by digit, an
account in groups, an e-mail with "at" and "dot", a name in lower case after "my client", ...).
The copies are scanned like any record and each canary counts as found when the findings
cover at least half of its characters. The copies and their values live only in memory for
the length of the scan: they are never stored, never reach the sanitized view and never leave
the process; the receipt keeps counts per type.

The forms here are written apart from the recognizers, from the shapes people use, and are
chosen at random on every scan, so a recognizer that stops covering a form shows up as a
canary miss on the next scan of any version.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from governance.pii.identifiers import luhn_valid

SPELLED = "zero one two three four five six seven eight nine".split()
FIRST = "Adaeze Oluwaseun Thanh Priya Mateo Ingrid Kwabena Siobhan Dmitri Leilani Yusuf Marisol"
LAST = "Okafor Adebayo Nguyen Raghunathan Castillo Lindqvist Mensah Gallagher Volkov Kahale"
STREETS = "Maple Cedar Juniper Willow Sycamore Magnolia Aspen Hawthorn".split()


@dataclass(frozen=True)
class Canary:
    entity: str
    form: str
    sentence: str
    start: int  # of the value within the sentence
    end: int


def _digits(rng: random.Random, count: int, first: str = "123456789") -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(count - 1))


def _ssn(rng: random.Random) -> str:
    area = rng.randint(100, 665)
    return f"{area:03d}{rng.randint(10, 99):02d}{rng.randint(1000, 9999):04d}"


def _card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    for check in string.digits:
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST.split())} {rng.choice(LAST.split())}"


def _with(before: str, value: str, after: str = ".") -> tuple[str, int, int]:
    return before + value + after, len(before), len(before) + len(value)


FORMS: dict[str, list[tuple[str, Callable[[random.Random], tuple[str, int, int]]]]] = {
    "US_SSN": [
        ("dashed", lambda r: _with("My SSN is ", "{}-{}-{}".format(*_split(_ssn(r))))),
        ("mixed", lambda r: _with("ss number ", "{} {}-{}".format(*_split(_ssn(r))))),
        (
            "spelled",
            lambda r: _with("social is ", " ".join(SPELLED[int(d)] for d in _ssn(r)), " thanks"),
        ),
        ("line break", lambda r: _with("SSN: ", "{}-{}-\n{}".format(*_split(_ssn(r))))),
    ],
    "US_ITIN": [
        (
            "dashed",
            lambda r: _with(
                "my itin ", f"9{r.randint(10, 99)}-{r.randint(70, 88)}-{r.randint(1000, 9999)}"
            ),
        ),
    ],
    "US_EIN": [
        ("dashed", lambda r: _with("EIN ", f"{r.randint(20, 27)}-{_digits(r, 7)}")),
        ("plain", lambda r: _with("our ein is ", f"{r.randint(30, 48)}{_digits(r, 7)}")),
    ],
    "US_BANK_NUMBER": [
        ("grouped", lambda r: _with("acct ", " ".join(_digits(r, 4) for _ in range(3)))),
        ("plain", lambda r: _with("checking account number ", _digits(r, 10))),
    ],
    "CREDIT_CARD": [
        ("dots", lambda r: _with("card ", ".".join(_chunks(_card(r), 4)))),
        ("line break", lambda r: _with("card no ", _broken(" ".join(_chunks(_card(r), 4))))),
    ],
    "EMAIL_ADDRESS": [
        ("spelled", lambda r: _with("write me at ", f"{_handle(r)} at {_host(r)} dot com")),
        ("bracketed", lambda r: _with("email ", f"{_handle(r)}[at]{_host(r)}[dot]net")),
        ("plain", lambda r: _with("email ", f"{_handle(r)}@{_host(r)}.org")),
    ],
    "PHONE_NUMBER": [
        (
            "dashed",
            lambda r: _with(
                "call me at ",
                f"({r.randint(201, 989)}) {r.randint(200, 999)}-{r.randint(1000, 9999)}",
            ),
        ),
        (
            "spelled",
            lambda r: _with(
                "my cell is ", " ".join(SPELLED[int(d)] for d in _digits(r, 10, "23456789"))
            ),
        ),
    ],
    "DATE_OF_BIRTH": [
        (
            "month name",
            lambda r: _with("born on ", f"{r.randint(1, 28)}-Sep-{r.randint(1940, 2005)}"),
        ),
        (
            "ordinal",
            lambda r: _with(
                "dob ", f"{r.choice(['2nd', '3rd', '14th'])} of october {r.randint(1940, 2005)}"
            ),
        ),
    ],
    "STREET_ADDRESS": [
        (
            "street",
            lambda r: _with(
                "I live at ",
                f"{r.randint(10, 9999)} {r.choice(STREETS)} "
                f"Street, Dayton, OH {r.randint(43000, 45999)}",
            ),
        ),
        (
            "rural route",
            lambda r: _with(
                "mail to ",
                f"RR {r.randint(1, 9)} Box {r.randint(10, 999)}"
                f", Lubbock TX {r.randint(79000, 79999)}",
            ),
        ),
        ("po box", lambda r: _with("send it to ", f"POB {r.randint(10, 9999)}, Austin TX 78701")),
    ],
    "PERSON": [
        ("title case", lambda r: _with("my client ", _name(r), " called")),
        ("lower case", lambda r: _with("account holder: ", _name(r).lower(), " thanks")),
        ("upper case", lambda r: _with("Dear ", _name(r).upper(), ",")),
    ],
    "PASSPORT": [
        (
            "letter and digits",
            lambda r: _with("passport no. ", f"{r.choice('ACEX')}{_digits(r, 8)}"),
        ),
    ],
    "US_DRIVER_LICENSE": [
        (
            "state format",
            lambda r: _with(
                "driver's license ",
                f"{r.choice('DFSW')}{_digits(r, 3)}-{_digits(r, 4)}-{_digits(r, 4)}",
            ),
        ),
    ],
    "IBAN_CODE": [
        ("lower case", lambda r: _with("iban ", "de89 3704 0044 0532 0130 00")),
    ],
}


def _broken(grouped: str) -> str:
    """A grouped value broken over two lines at its middle space."""
    middle = grouped.index(" ", len(grouped) // 2 - 2)
    return grouped[:middle] + "\n" + grouped[middle + 1 :]


def _split(ssn: str) -> tuple[str, str, str]:
    return ssn[:3], ssn[3:5], ssn[5:]


def _chunks(value: str, size: int) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)]


def _handle(rng: random.Random) -> str:
    return rng.choice(["jdoe", "maria.l", "t.nguyen", "kwame77", "lee_h"]) + str(rng.randint(1, 99))


def _host(rng: random.Random) -> str:
    return rng.choice(["gmail", "yahoo", "fastmail", "example-mail"])


def canaries(entities: set[str], rng: random.Random) -> list[Canary]:
    """One canary of every form of every entity type the rules act on."""
    out = []
    for entity, forms in FORMS.items():
        if entity not in entities:
            continue
        for form, make in forms:
            sentence, start, end = make(rng)
            out.append(Canary(entity, form, sentence, start, end))
    return out


def plant(text: str, canary: Canary) -> tuple[str, int, int]:
    """The text with the canary's sentence after it, and the value's span in the result."""
    joined = text.rstrip() + " " + canary.sentence
    offset = len(text.rstrip()) + 1
    return joined, offset + canary.start, offset + canary.end


def covered(findings, start: int, end: int) -> bool:
    """Found when findings cover at least half of the value's characters."""
    hit = set()
    for f in findings:
        hit.update(range(max(start, f.start), min(end, f.end)))
    return len(hit) * 2 >= end - start
