"""Reading policy.csv: its p and g lines with their line numbers, and what is misshapen."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

POLICY_FILE = "policy.csv"


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    severity: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class Rule:
    """One line of policy.csv."""

    line: int
    ptype: str
    fields: tuple[str, ...]


def read_rules(path: Path) -> tuple[list[Rule], list[Problem]]:
    """Parse policy.csv keeping line numbers; report lines of the wrong shape."""
    rules, problems = [], []
    kept = [
        (number, text)
        for number, raw in enumerate(path.read_text().splitlines(), start=1)
        if (text := raw.strip()) and not text.startswith("#")
    ]
    # One CSV reader over every kept line: a reader per line costs a third of a large load.
    # A quote could carry a field over a line end, so files with quotes go line by line.
    texts = [text for _number, text in kept]
    if any('"' in text for text in texts):
        parsed = (next(csv.reader([text], skipinitialspace=True)) for text in texts)
    else:
        parsed = csv.reader(texts, skipinitialspace=True)
    for (number, _text), row in zip(kept, parsed, strict=True):
        fields = tuple(f.strip() for f in row)
        ptype, values = fields[0], fields[1:]
        expected = {"p": 4, "g": 3}.get(ptype)
        if expected is None:
            problems.append(Problem(POLICY_FILE, number, "error", f"unknown rule type {ptype!r}"))
        elif len(values) != expected or not all(values):
            problems.append(
                Problem(
                    POLICY_FILE,
                    number,
                    "error",
                    f"a {ptype} rule needs {expected} non-empty fields, found {len(values)}",
                )
            )
        else:
            rules.append(Rule(number, ptype, values))
    return rules, problems
