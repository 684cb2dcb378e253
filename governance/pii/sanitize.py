"""From a record and its findings to what a training worker receives, and the residual pass.

One code path serves the scan (the sanitized view that bundles are built from) and
`govern pii redact` (what a steward sees before uploading), so the two cannot differ.

The sanitized record holds only the text fields (`text`, or `prompt` and `completion`), with
each finding replaced by a typed placeholder such as `<US_SSN>`. Metadata is stripped: it is
free-form, never used for training, and a place where PII hides unscanned.

After redaction a second, high-recall and low-precision pass looks at what is left for
anything that still looks like personal data: five or more digits in a run that the
allow-list does not explain, an "@" between words or an address with "at"/"dot" spelled out,
a token mixing letters with four or more digits, or a known name next to a personal cue. A
record with such a residual is held back in quarantine for a data steward to keep or drop.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from governance.datasets.records import TEXT_FIELDS
from governance.pii.identifiers import _is_date, _runs, _unexplained
from governance.pii.masking import mask_spans
from governance.pii.rules import DomainRules
from governance.pii.scanner import JOIN, Finding

RESIDUAL_DIGITS = 5
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")
_EMAIL_LIKE = re.compile(
    r"(?i)[\w.+-]+\s*(?:@|\(at\)|\[at\]|\{at\})\s*[\w-]+|"
    r"\b[\w.+-]+\s+at\s+[\w-]+\s+(?:dot|\.)\s+(?:com|net|org|edu|gov|io|co|us|uk|ca|de|info|biz)\b"
)
_MIXED_ID = re.compile(r"\b(?=[A-Za-z0-9*-]*[A-Za-z])(?=(?:[A-Za-z*-]*\d){4})[A-Za-z0-9*-]{5,}\b")
_PERSONAL_CUE = re.compile(
    r"(?i)\b(?:my|his|her|our|their)\s+(?:client|son|daughter|wife|husband|spouse|mom|mother|"
    r"dad|father|boss|brother|sister|partner|friend|tenant|landlord|dependent|name\s+is)\b"
    r"|\b(?:mr|mrs|ms|dr|dear|attn|from|signed|regards|thanks|sincerely)\b[.:,]?"
    r"|\b(?:account\s+holder|client|taxpayer|customer|employee|payee|cardholder)\s*:"
)
_WORD = re.compile(r"[^\W\d_][\w'-]*")


@dataclass
class Sanitized:
    """What one record becomes: the clean record (None when dropped), and what was done."""

    clean: dict[str, Any] | None
    actions: set[str] = field(default_factory=set)
    residuals: dict[str, int] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        return "block" in self.actions

    @property
    def dropped(self) -> bool:
        return "drop" in self.actions or "block" in self.actions


def redact(record: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """The record's text fields with each finding's span replaced by its placeholder.

    Overlapping findings are covered as their union, labelled by the stronger one.
    """
    by_field: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_field[finding.field].append(finding)
    clean = {}
    for name in TEXT_FIELDS:
        value = record.get(name)
        if not isinstance(value, str):
            continue
        clean[name] = mask_spans(value, by_field.get(name, []))
    return clean


def sanitize(
    record: dict[str, Any], findings: list[Finding], rules: DomainRules, names=None
) -> Sanitized:
    """Apply the rules' actions to a record's findings, then look for residuals."""
    actions = {
        rules.rule_for(f.entity_type).action for f in findings if rules.rule_for(f.entity_type)
    }
    if "drop" in actions or "block" in actions:
        return Sanitized(None, actions)
    clean = redact(record, findings)
    text = JOIN.join(clean[f] for f in TEXT_FIELDS if f in clean)
    return Sanitized(clean, actions, residuals(text, rules, names))


def residuals(text: str, rules: DomainRules, names=None) -> dict[str, int]:
    """What in a redacted text still looks like personal data, counted by kind."""
    found: Counter = Counter()
    masked = _PLACEHOLDER.sub(lambda m: " " * len(m.group()), text)
    explained = [
        (m.start(), m.end()) for pattern in rules.allow for m in pattern.regex.finditer(masked)
    ]
    for parts in _runs(masked):
        for piece in _unexplained(parts, explained):
            digits = sum(len(s.digits) for part in piece for s in part)
            if digits >= RESIDUAL_DIGITS and not _is_date(piece):
                found["DIGITS"] += 1
    found["EMAIL"] += len(_EMAIL_LIKE.findall(masked))
    for match in _MIXED_ID.finditer(masked):
        if not any(a <= match.start() and match.end() <= b for a, b in explained):
            found["MIXED_ID"] += 1
    if names is not None:
        for cue in _PERSONAL_CUE.finditer(masked):
            following = _WORD.findall(masked[cue.end() : cue.end() + 40])[:3]
            if any(
                names.is_name_word(w.lower()) and w.lower() not in ("is", "my", "the")
                for w in following
                if w[:1].isupper() or names.is_uncommon_name(w.lower())
            ):
                found["NAME"] += 1
    return {k: v for k, v in found.items() if v}


def mask_residuals(text: str) -> str:
    """A quarantined record as a steward reviews it: digits shown as #, so the shape of what
    the residual pass saw is visible and its value is not."""
    return re.sub(r"\d", "#", text)
