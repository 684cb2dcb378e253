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
_DATE_WORDS = re.compile(
    r"\d{1,2}[-/. ](?i:[a-z]{3,10})[-/. ](?:\d{2}|\d{4})|(?i:[a-z]{3,10})[-/. ]\d{4}"
)
_WORD = re.compile(r"[^\W\d_][\w'-]*")


@dataclass
class Sanitized:
    """What one record becomes: the clean record (None when dropped), and what was done."""

    clean: dict[str, Any] | None
    actions: set[str] = field(default_factory=set)
    residuals: dict[str, int] = field(default_factory=dict)
    # What held the record, for the steward: each span's kind and context, digits as #.
    held: list[dict[str, str]] = field(default_factory=list)

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
    spans = residual_spans(text, rules, names)
    return Sanitized(clean, actions, _counts(spans), residual_view(text, spans) if spans else [])


def residuals(text: str, rules: DomainRules, names=None) -> dict[str, int]:
    """What in a redacted text still looks like personal data, counted by kind."""
    return _counts(residual_spans(text, rules, names))


def _counts(spans: list[tuple[str, int, int]]) -> dict[str, int]:
    return dict(Counter(kind for kind, _start, _end in spans))


# ZIP codes after a state ("TX 77002"): what is left of an address whose street was redacted.
_ZIP_AFTER_STATE = re.compile(r"(?<=\b[A-Z]{2}\s)\d{5}(?:-\d{4})?\b")
_ZIP_AFTER_STREET = re.compile(
    r"<STREET_ADDRESS>[ \t,]*(?:[A-Za-z .]{0,30},?[ \t]*)?(\d{5}(?:-\d{4})?)\b"
)


def residual_spans(text: str, rules: DomainRules, names=None) -> list[tuple[str, int, int]]:
    """What in a redacted text can still be a personal value: (kind, start, end) each.

    The pass is broad on purpose, but holds a record only for something that can still be a
    personal value: a run of five or more digits that neither the allow-list (which names
    timestamps, reject and notice codes, e-file PINs, control numbers, masked TINs and form
    names in policies/pii.yaml) nor a ZIP code's place (after a state or a redacted street)
    explains, an e-mail-like token, a token mixing letters with four digits that is no date,
    or a known name next to a personal cue.
    """
    found: list[tuple[str, int, int]] = []
    masked = _PLACEHOLDER.sub(lambda m: " " * len(m.group()), text)
    explained = [
        (m.start(), m.end()) for pattern in rules.allow for m in pattern.regex.finditer(masked)
    ]
    explained += [(m.start(), m.end()) for m in _ZIP_AFTER_STATE.finditer(text)]
    explained += [(m.start(1), m.end(1)) for m in _ZIP_AFTER_STREET.finditer(text)]
    for parts in _runs(masked):
        for piece in _unexplained(parts, explained):
            digits = sum(len(s.digits) for part in piece for s in part)
            if digits >= RESIDUAL_DIGITS and not _is_date(piece):
                found.append(("DIGITS", piece[0][0].start, piece[-1][-1].end))
    found += [("EMAIL", m.start(), m.end()) for m in _EMAIL_LIKE.finditer(masked)]
    for match in _MIXED_ID.finditer(masked):
        if _DATE_WORDS.fullmatch(match.group()):
            continue  # a date is the date recognizer's to judge, not an identifier
        if not any(a <= match.start() and match.end() <= b for a, b in explained):
            found.append(("MIXED_ID", match.start(), match.end()))
    if names is not None:
        # The gazetteer comes from the recognizers, so this process has Presidio loaded.
        from governance.pii.recognizers import looks_like_company

        for cue in _PERSONAL_CUE.finditer(masked):
            for word in _WORD.finditer(masked, cue.end(), min(len(masked), cue.end() + 40)):
                w = word.group()
                if word.start() - cue.end() > 12:
                    break
                lowered = w.lower()
                if (
                    (w[:1].isupper() or names.is_uncommon_name(lowered))
                    and names.is_name_word(lowered)
                    and (names.is_uncommon_name(lowered) or w[1:].islower())
                    and not names.is_english_word(lowered)
                    and not looks_like_company(masked, word.start(), cue.end() + 40)
                ):
                    found.append(("NAME", word.start(), word.end()))
                    break
    return sorted(found, key=lambda f: (f[1], f[2]))


def residual_view(text: str, spans: list[tuple[str, int, int]], context: int = 40) -> list[dict]:
    """What a steward sees of each held span: its kind, and the span with a little context
    around it, every digit shown as "#" (the shape, never the value)."""
    out = []
    for kind, start, end in spans:
        out.append(
            {
                "kind": kind,
                "before": mask_residuals(text[max(0, start - context) : start]),
                "span": mask_residuals(text[start:end]),
                "after": mask_residuals(text[end : end + context]),
            }
        )
    return out


def mask_residuals(text: str) -> str:
    """A quarantined record as a steward reviews it: digits shown as #, so the shape of what
    the residual pass saw is visible and its value is not."""
    return re.sub(r"\d", "#", text)
