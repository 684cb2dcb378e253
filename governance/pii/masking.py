"""Replace found spans of a text with their type's placeholder (`<US_SSN>`): the sanitized
training view and the gateway's guardrails mask the same way. Pure, no scanner imports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Found(Protocol):
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def entity_type(self) -> str: ...
    @property
    def score(self) -> float: ...


def mask_spans(text: str, spans: Iterable[Found]) -> str:
    """The text with each span replaced by its placeholder; overlapping spans are covered as
    their union, labelled by the stronger one."""
    merged: list[list[Any]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1][1]:
            last = merged[-1]
            if span.score > last[3]:
                last[2], last[3] = span.entity_type, span.score
            last[1] = max(last[1], span.end)
        else:
            merged.append([span.start, span.end, span.entity_type, span.score])
    pieces, position = [], 0
    for start, end, entity, _score in merged:
        pieces.append(text[position:start])
        pieces.append(f"<{entity}>")
        position = end
    pieces.append(text[position:])
    return "".join(pieces)
