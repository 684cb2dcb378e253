"""Recall estimated from a steward's labels of a random sample of a version's own records.

The canaries measure the forms the rules know; they cannot see a blind spot. This estimate
can: a data steward reads a random sample of the sanitized records (redacted ones included)
and counts, in each, the personal values the redaction missed. With `redacted` the values the
scan replaced in those records and `missed` the values the steward found left,

    recall = redacted / (redacted + missed)

with the 95% Wilson score interval on that proportion. A placeholder counts as a caught value
even where the scanner over-redacted, so the estimate leans high by the scanner's false
positives in the sample; the record figure beside it, the share of sampled records with any
miss (the leak rate) and its Wilson upper bound, has no such lean.
"""

from __future__ import annotations

import math
import re
from typing import Any

Z95 = 1.959963984540054
PLACEHOLDER = re.compile(r"<[A-Z_]+>")


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (lower, upper); (0, 1) with no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    denominator = 1 + z * z / trials
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def placeholders(record: dict[str, Any]) -> int:
    """How many values the redaction replaced in a sanitized record."""
    return sum(len(PLACEHOLDER.findall(v)) for v in record.values() if isinstance(v, str))


def estimate(labels: list[tuple[int, int]], sample_size: int) -> dict[str, Any]:
    """The figures from (redacted, missed) per labelled record."""
    redacted = sum(r for r, _m in labels)
    missed = sum(m for _r, m in labels)
    leaking = sum(1 for _r, m in labels if m)
    low, _high = wilson(redacted, redacted + missed)
    _leak_low, leak_high = wilson(leaking, len(labels))
    return {
        "sample": sample_size,
        "labelled": len(labels),
        "redacted": redacted,
        "missed": missed,
        "recall": round(redacted / (redacted + missed), 4) if redacted + missed else None,
        "recall_lower_bound": round(low, 4) if redacted + missed else None,
        "records_with_miss": leaking,
        "leak_rate": round(leaking / len(labels), 4) if labels else None,
        "leak_rate_upper_bound": round(leak_high, 4) if labels else None,
        "complete": len(labels) >= sample_size,
    }
