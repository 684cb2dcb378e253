"""The catch-all for identifiers: any run of seven or more digits is redacted unless the
allow-list explains it; checksums, grouping and context words only choose its label.

The specific recognizers (Presidio's SSN, card, IBAN, routing and phone recognizers, our EIN
and account ones) still run and label what they know. This pass is what makes the gate fail
closed: an SSN written "531 44-2907", an account in groups of four, a card with dots or a
routing number with no word beside it are all runs of digits, and a run of digits that
nothing explains is taken out whatever it turns out to be.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

# IRS campus prefixes that EINs may start with (IRS "How EINs are assigned").
EIN_PREFIXES = frozenset(
    f"{n:02d}"
    for n in [
        *range(1, 7),
        *range(10, 17),
        *range(20, 28),
        *range(30, 49),
        *range(50, 69),
        *range(71, 78),
        *range(80, 89),
        *range(90, 96),
        98,
        99,
    ]
)
MIN_DIGITS = 7
IDENTIFIER = "IDENTIFIER"  # an identifier of no more specific type
US_TAX_ID = "US_TAX_ID"  # nine digits that may be an SSN, ITIN or EIN: evidence does not say

# A digit group, with any letters glued to it ("A1234567", "ID98765").
_GROUP = re.compile(r"[A-Za-z]{0,3}\d+[A-Za-z]{0,3}")
# What may stand between the groups of one identifier: one dash, dot or slash (with a space
# around it at most), a bracket as in "(555) 123", or one or two spaces.
_HARD_SEPARATOR = re.compile(r"^(?:[ \t]?[-./][ \t]?|\)[ \t]?|[ \t]?\(|[ \t]?\)[ \t]?-?[ \t]?)$")
_SOFT_SEPARATOR = re.compile(r"^[ \t]{1,2}$")

# Context words, nearest first wins. Each says what kind of identifier follows.
CUES: list[tuple[str, re.Pattern[str]]] = [
    ("US_ITIN", re.compile(r"(?i)\bitin\b|individual taxpayer")),
    ("US_SSN", re.compile(r"(?i)\bssn\b|\bss#|social(?:\s+security)?|\bss\s*(?:no|number)")),
    ("US_EIN", re.compile(r"(?i)\bf?ein\b|employer\s+id|\btax\s*id\s*\(ein\)")),
    ("ABA_ROUTING_NUMBER", re.compile(r"(?i)\brouting\b|\baba\b|\brtn\b|transit")),
    (
        "US_BANK_NUMBER",
        re.compile(r"(?i)\b(?:account|acct|a/c|checking|savings|chequing|deposit)\b"),
    ),
    (
        "CREDIT_CARD",
        re.compile(r"(?i)\b(?:card|visa|mastercard|amex|discover|debit|credit)\b"),
    ),
    ("PASSPORT", re.compile(r"(?i)\bpassport\b")),
    ("US_DRIVER_LICENSE", re.compile(r"(?i)\bdriver'?s?\b|\blicen[cs]e\b|\bdl\b")),
    (
        "PHONE_NUMBER",
        re.compile(
            r"(?i)\b(?:phone|tel|telephone|call|calling|cell|mobile|fax|text|sms|whatsapp|"
            r"reach|dial|contact)\b"
        ),
    ),
    ("US_TAX_ID", re.compile(r"(?i)\btin\b|taxpayer\s+id|tax\s+id")),
]
CUE_BEFORE = 48
CUE_AFTER = 24


@functools.cache
def _presidio_checks():
    """Presidio's SSN and ABA checks, loaded on first use (this module stays light)."""
    from governance.pii.loading import import_presidio

    import_presidio()
    from presidio_analyzer.predefined_recognizers import AbaRoutingRecognizer, UsSsnRecognizer

    return UsSsnRecognizer(), AbaRoutingRecognizer()


@dataclass(frozen=True)
class Identifier:
    start: int
    end: int
    entity_type: str
    score: float


@dataclass
class _Segment:
    start: int
    end: int
    digits: str


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that card numbers carry."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _runs(text: str) -> list[list[list[_Segment]]]:
    """Digit runs: lists of space-joined parts, each a list of hard-joined segments."""
    groups = [m for m in _GROUP.finditer(text) if any(c.isdigit() for c in m.group())]
    runs: list[list[list[_Segment]]] = []
    previous = None
    for match in groups:
        segment = _Segment(match.start(), match.end(), re.sub(r"\D", "", match.group()))
        gap = text[previous.end() : match.start()] if previous is not None else None
        if gap is not None and runs and _HARD_SEPARATOR.match(gap):
            runs[-1][-1].append(segment)
        elif gap is not None and runs and _SOFT_SEPARATOR.match(gap):
            runs[-1].append([segment])
        else:
            runs.append([[segment]])
        previous = match
    return runs


def _is_date(parts: list[list[_Segment]]) -> bool:
    """A date written with digits ("01/15/1990", "1990-01-15", "15.01.90") is no identifier;
    a date of birth is the date recognizer's, which needs a word that says so."""
    segments = [s for part in parts for s in part]
    if len(segments) != 3 or len(parts) != 1:
        return False
    a, b, c = (s.digits for s in segments)
    if len(a) == 4:
        year, month, day = a, b, c
    elif len(c) in (2, 4):
        year = c
        month, day = (a, b) if int(a or 0) <= 12 else (b, a)
    else:
        return False
    return (
        len(year) in (2, 4)
        and len(month) <= 2
        and len(day) <= 2
        and 1 <= int(month) <= 12
        and 1 <= int(day) <= 31
    )


def _cue(text: str, start: int, end: int) -> str | None:
    """The identifier kind the nearest context word names, before it or just after it."""
    before = text[max(0, start - CUE_BEFORE) : start]
    # A cue in an earlier sentence or line does not speak for this value.
    cut = max(before.rfind("\n"), before.rfind(". "), before.rfind("? "), before.rfind("! "))
    if cut >= 0:
        before = before[cut + 1 :]
    best: tuple[int, str] | None = None
    for kind, pattern in CUES:
        for match in pattern.finditer(before):
            distance = len(before) - match.end()
            if best is None or distance < best[0]:
                best = (distance, kind)
    if best is not None:
        return best[1]
    after = text[end : end + CUE_AFTER]
    cut = after.find("\n")
    after = after if cut < 0 else after[:cut]
    for kind, pattern in CUES:
        if pattern.search(after):
            return kind
    return None


def classify(text: str, start: int, end: int, digits: str, shape: Sequence[int]) -> str:
    """The most specific type the evidence supports for an identifier of these digits."""
    cue = _cue(text, start, end)
    count = len(digits)
    written = text[start:end]
    if cue in ("US_SSN", "US_ITIN", "US_EIN", "US_TAX_ID") and count == 9:
        if cue == "US_SSN" and digits.startswith("9"):
            return "US_ITIN"  # an ITIN given where an SSN was asked for
        if cue == "US_EIN" and digits[:2] not in EIN_PREFIXES:
            return US_TAX_ID  # no EIN the IRS would assign
        return cue
    if cue == "ABA_ROUTING_NUMBER" and count == 9:
        return cue if _presidio_checks()[1].validate_result(digits) else "US_BANK_NUMBER"
    if cue in ("US_BANK_NUMBER", "PASSPORT", "US_DRIVER_LICENSE"):
        return cue
    if cue == "CREDIT_CARD" and 12 <= count <= 19:
        return "CREDIT_CARD"
    if cue == "PHONE_NUMBER" and 7 <= count <= 15:
        return "PHONE_NUMBER"
    if 13 <= count <= 19 and luhn_valid(digits):
        return "CREDIT_CARD"
    if count == 9:
        shape = tuple(shape)
        if shape == (3, 2, 4):
            dashed = f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
            if digits.startswith("9"):
                return "US_ITIN" if _itin_valid(dashed) else US_TAX_ID
            ssn = _presidio_checks()[0]
            return "US_SSN" if not ssn.invalidate_result(dashed) else US_TAX_ID
        if shape == (2, 7) and digits[:2] in EIN_PREFIXES:
            return "US_EIN"
        return US_TAX_ID
    if (count == 10 or (count == 11 and digits.startswith("1"))) and _phone_shaped(written):
        return "PHONE_NUMBER"
    return IDENTIFIER


def _itin_valid(dashed: str) -> bool:
    """ITINs start with 9 and carry a group in 50-65, 70-88, 90-92 or 94-99."""
    group = int(dashed[4:6])
    return any(a <= group <= b for a, b in ((50, 65), (70, 88), (90, 92), (94, 99)))


_PHONE = re.compile(
    r"^(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[.-])\d{3}[.-]\d{4}$|^\+\d[\d .-]{8,16}$"
)


def _phone_shaped(written: str) -> bool:
    return bool(_PHONE.match(written))


def find_identifiers(text: str, explained: Sequence[tuple[int, int]]) -> list[Identifier]:
    """Every run of MIN_DIGITS or more digits in `text` that `explained` spans do not cover."""
    if sum(c.isdigit() for c in text) < MIN_DIGITS:
        return []
    found: list[Identifier] = []
    for parts in _runs(text):
        if sum(len(s.digits) for part in parts for s in part) < MIN_DIGITS:
            continue
        for piece in _unexplained(parts, explained):
            digits = "".join(s.digits for part in piece for s in part)
            if len(digits) < MIN_DIGITS or _is_date(piece):
                continue
            start, end = piece[0][0].start, piece[-1][-1].end
            shape = [len(s.digits) for part in piece for s in part]
            kind = classify(text, start, end, digits, shape)
            found.append(Identifier(start, end, kind, 0.6))
    return found


def _covered(segment: _Segment, explained: Sequence[tuple[int, int]]) -> bool:
    return any(a <= segment.start and segment.end <= b for a, b in explained)


def _unexplained(
    parts: list[list[_Segment]], explained: Sequence[tuple[int, int]]
) -> list[list[list[_Segment]]]:
    """Split a run at the parts the allow-list explains ("Form 1040 2025" is two references).

    A part joined by dashes, dots or slashes is explained only as a whole ("1-800-829-1040");
    parts joined by spaces are separate words unless they are grouped like one identifier
    (three or more groups of one length: an account or card written in fours).
    """
    if not explained:
        return [parts]
    part_explained = [all(_covered(s, explained) for s in part) for part in parts]
    if not any(part_explained):
        return [parts]
    if all(part_explained):
        return []
    lengths = {sum(len(s.digits) for s in part) for part in parts}
    if len(parts) >= 3 and len(lengths) == 1:
        return [parts]
    # Grouped like an SSN or a phone number ("355 51 2068", "415 555 2019"): one value, even
    # when a group alone reads as a year.
    shape = tuple(len(s.digits) for part in parts for s in part)
    if shape in ((3, 2, 4), (3, 3, 4), (1, 3, 3, 4)):
        return [parts]
    pieces: list[list[list[_Segment]]] = [[]]
    for part, is_explained in zip(parts, part_explained, strict=True):
        if is_explained:
            pieces.append([])
        else:
            pieces[-1].append(part)
    return [p for p in pieces if p]
