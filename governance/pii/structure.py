"""Tables and objects pasted into a message, read as structure: a column's header or a key's
name decides the type of every value under it.

People paste CSV and TSV exports, JSON payloads and "key: value" dumps into support messages.
Free-text recognizers see a row like `RAYMOND PALMER,512-83-7741,04/12/1961,12246 115TH AVE`
as a run of words and numbers with no cue; read as a table with a header `name,ssn,dob,
address`, every cell has a type. A block of two or more lines with the same number of cells
(comma, tab, semicolon or pipe) is a table; its first line is a header when its cells are
words and one of them names a kind of personal value. A table without a header is classified
column by column from the shapes of its cells (dates, street lines, names), each column voting
by its majority, since a column holds one kind of value. JSON keys are read wherever a
`"key": "value"` pair appears, whether or not the whole object parses.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from governance.pii.names import unaccent

# Header words (lower case, words joined by one space) and the type of the values under them.
HEADERS: dict[str, str] = {}
for _entity, _phrases in {
    "PERSON": [
        "name",
        "full name",
        "first name",
        "last name",
        "first",
        "last",
        "given name",
        "surname",
        "family name",
        "middle name",
        "taxpayer name",
        "taxpayer",
        "employee name",
        "employee",
        "spouse name",
        "spouse",
        "dependent name",
        "dependent",
        "nombre",
        "nombres",
        "apellido",
        "apellidos",
        "nombre completo",
        "recipient",
        "recipient name",
        "payee",
        "payee name",
        "contact",
        "contact name",
        "account holder",
        "cardholder",
        "client",
        "client name",
        "customer",
        "customer name",
        "beneficiary",
        "preparer name",
        "fname",
        "lname",
        "firstname",
        "lastname",
        "fullname",
        "taxpayer full name",
    ],
    "US_SSN": [
        "ssn",
        "social",
        "social security",
        "social security number",
        "ss",
        "ss number",
        "soc sec",
        "seguro social",
        "numero de seguro social",
        "nss",
        "taxpayer ssn",
        "spouse ssn",
        "dependent ssn",
    ],
    "US_TAX_ID": [
        "tin",
        "taxpayer id",
        "tax id",
        "taxpayer identification number",
        "recipient tin",
        "payee tin",
        "taxpayer id number",
    ],
    "US_ITIN": ["itin"],
    "US_EIN": ["ein", "fein", "employer id", "employer identification number"],
    "DATE_OF_BIRTH": [
        "dob",
        "date of birth",
        "birth date",
        "birthdate",
        "birthday",
        "born",
        "birth",
        "fecha de nacimiento",
        "fecha nacimiento",
        "nacimiento",
        "fecha de nac",
        "fecha nac",
        "f nac",
        "cumpleanos",
        "date of birth dob",
    ],
    "STREET_ADDRESS": [
        "address",
        "street",
        "street address",
        "address1",
        "address 1",
        "address line 1",
        "address line",
        "addr",
        "home address",
        "mailing address",
        "residence",
        "direccion",
        "domicilio",
        "calle",
        "street1",
    ],
    "PHONE_NUMBER": [
        "phone",
        "telephone",
        "tel",
        "mobile",
        "cell",
        "phone number",
        "cell phone",
        "mobile phone",
        "home phone",
        "work phone",
        "telefono",
        "celular",
        "movil",
    ],
    "EMAIL_ADDRESS": ["email", "e mail", "mail", "email address", "correo", "correo electronico"],
    "US_BANK_NUMBER": [
        "account",
        "acct",
        "account number",
        "acct number",
        "acct no",
        "bank account",
        "account no",
        "cuenta",
        "numero de cuenta",
        "checking",
        "savings",
    ],
    "ABA_ROUTING_NUMBER": ["routing", "routing number", "aba", "rtn", "transit", "routing no"],
    "CREDIT_CARD": ["card", "card number", "cc", "credit card", "cc number", "tarjeta"],
    "PASSPORT": ["passport", "passport number", "passport no", "pasaporte"],
    "US_DRIVER_LICENSE": [
        "dl",
        "driver license",
        "drivers license",
        "driver s license",
        "license",
        "licence",
    ],
    "IP_ADDRESS": ["ip", "ip address", "client ip"],
}.items():
    for _phrase in _phrases:
        HEADERS[_phrase] = _entity


def header_type(header: str) -> str | None:
    """The type of value a column header or JSON key names, or None ("status", "amount")."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", header)  # camelCase
    words = unaccent(words).lower()
    words = re.sub(r"[^a-z0-9]+", " ", words).strip()
    if words in HEADERS:
        return HEADERS[words]
    # "taxpayer_dob", "spouse first name", "primary ssn": the last words decide.
    parts = words.split()
    for size in (3, 2, 1):
        if len(parts) > size and " ".join(parts[-size:]) in HEADERS:
            return HEADERS[" ".join(parts[-size:])]
    return None


@dataclass(frozen=True)
class Cell:
    start: int
    end: int
    entity_type: str


SEPARATORS = (",", "\t", ";", "|")
_JSON_PAIR = re.compile(
    r'"(?P<key>[^"\\\n]{1,60})"\s*:\s*(?:"(?P<string>(?:[^"\\\n]|\\.){1,200})"|'
    r"(?P<number>[0-9][0-9 .-]{3,40}[0-9]))"
)
_DATE_CELL = re.compile(
    r"^(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{2}|\d{4})|\d{4}-\d{1,2}-\d{1,2}|"
    r"\d{1,2}[ -](?i:[a-z]{3,10})\.?[ -]\d{2,4}|(?i:[a-z]{3,10})\.? \d{1,2},? \d{4}|"
    r"\d{1,2} de (?i:[a-z]{4,10}) de \d{4})$"
)
_STREET_CELL = re.compile(
    r"^(?:\d{1,6}[A-Za-z]?\s+(?:[NSEWnsew]\.?\s+)?[\w'.-]+(?:\s+[\w'.#-]+){0,5}|"
    r"(?i:p\.?\s?o\.?\s?box|rr|rural route|hc)\s*\d+.*)$"
)
_ID_CELL = re.compile(r"^[\d -]{7,}$")


def find_cells(text: str, is_name: Callable[[str], bool]) -> list[Cell]:
    """Typed values of the tables and JSON pairs in `text`.

    `is_name(cell)` says whether a header-less cell reads as a person's name.
    """
    found: list[Cell] = []
    if '":' in text or '" :' in text:
        for match in _JSON_PAIR.finditer(text):
            kind = header_type(match.group("key"))
            group = "string" if match.group("string") is not None else "number"
            if kind is None or not match.group(group).strip():
                continue
            found.append(Cell(match.start(group), match.end(group), kind))
    if any(sep in text for sep in SEPARATORS) and "\n" in text:
        found += _tables(text, is_name)
    return found


def _lines(text: str) -> list[tuple[int, str]]:
    out, position = [], 0
    for line in text.split("\n"):
        out.append((position, line))
        position += len(line) + 1
    return out


def _cells(line: str, sep: str) -> list[tuple[int, int, str]] | None:
    """The cells of a line as (start, end, value), honouring quotes; None if it won't parse."""
    try:
        [row] = list(csv.reader(io.StringIO(line), delimiter=sep))
    except (csv.Error, ValueError):
        return None
    cells, position = [], 0
    for value in row:
        # Find the value where it is written (quoted or not) from the current position.
        raw_start = line.find(value, position) if value else position
        if raw_start < 0:
            return None
        cells.append((raw_start, raw_start + len(value), value))
        position = raw_start + len(value)
        next_sep = line.find(sep, position)
        position = next_sep + 1 if next_sep >= 0 else len(line)
    return cells


def _tables(text: str, is_name: Callable[[str], bool]) -> list[Cell]:
    found: list[Cell] = []
    lines = _lines(text)
    index = 0
    while index < len(lines):
        sep = _separator(lines[index][1])
        if sep is None:
            index += 1
            continue
        rows = []
        width = None
        while index < len(lines):
            offset, line = lines[index]
            cells = _cells(line, sep) if sep in line else None
            if cells is None or len(cells) < 2 or (width is not None and len(cells) != width):
                break
            width = len(cells)
            rows.append((offset, cells))
            index += 1
        if not rows:
            index += 1  # the line did not parse as a row
        elif len(rows) >= 2:
            found += _typed(rows, is_name)
    return found


def _separator(line: str) -> str | None:
    counts = Counter(c for c in line if c in SEPARATORS)
    return counts.most_common(1)[0][0] if counts else None


def _header(cells: list[tuple[int, int, str]]) -> list[str | None] | None:
    """Column types when the row is a header: word cells, one of which names a value."""
    if any(
        any(ch.isdigit() for ch in value) and not value.lower().startswith("address")
        for _s, _e, value in cells
    ):
        return None
    kinds = [header_type(value) for _s, _e, value in cells]
    return kinds if any(kinds) else None


def _typed(rows, is_name) -> list[Cell]:
    kinds = _header(rows[0][1])
    body = rows[1:] if kinds else rows
    if kinds is None:
        kinds = _vote(body, is_name)
    found = []
    for offset, cells in body:
        for (start, end, value), kind in zip(cells, kinds, strict=False):
            if kind and value.strip() and value.strip().lower() not in ("n/a", "na", "null", "-"):
                found.append(Cell(offset + start, offset + end, kind))
    return found


def _vote(rows, is_name) -> list[str | None]:
    """Types of a header-less table's columns, each by the shape most of its cells have.

    A column of dates is a column of birth dates only in a table that also holds names or
    identifiers: a row of people, not a ledger of payments."""
    width = len(rows[0][1])
    shapes: list[Counter] = [Counter() for _ in range(width)]
    for _offset, cells in rows:
        for column, (_s, _e, value) in enumerate(cells):
            value = value.strip()
            if _DATE_CELL.match(value):
                shapes[column]["DATE"] += 1
            elif _STREET_CELL.match(value):
                shapes[column]["STREET_ADDRESS"] += 1
            elif _ID_CELL.match(value):
                shapes[column]["ID"] += 1
            elif value and is_name(value):
                shapes[column]["PERSON"] += 1
    kinds: list[str | None] = []
    for counter in shapes:
        shape, count = counter.most_common(1)[0] if counter else (None, 0)
        kinds.append(shape if count * 2 > len(rows) else None)
    personal = any(k in ("PERSON", "ID") for k in kinds)
    return [
        ("DATE_OF_BIRTH" if personal else None) if k == "DATE" else (None if k == "ID" else k)
        for k in kinds
    ]
