"""JSON as the service accepts it: hostile documents are refused with a reason, never a 500.

Python's `json` accepts things that break later, deep inside the service: `NaN` and
`Infinity` (not JSON), duplicate keys (the last one silently wins), integers of thousands of
digits (Python refuses to print them past 4,300 digits), lone UTF-16 surrogates such as
`"\\ud800"` (not encodable as UTF-8, so a database write fails), NUL characters (PostgreSQL's
text columns refuse them), numbers beyond a double (`1e999` reads as infinity), and nesting
deep enough to exhaust the recursion limit. `loads` refuses each of these with a `JSONRefused`
that says what and where; API bodies and uploaded records both go through it.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64
# Integers beyond 64 bits have no column to go into and no portable JSON reading.
INT_MAX = 2**63 - 1


class JSONRefused(ValueError):
    """A syntactically valid JSON document the service does not accept, and why."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON number")


def _integer(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 19 or abs(int(text)) > INT_MAX:
        raise JSONRefused(
            f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is beyond 64 bits"
        )
    return int(text)


def _float(text: str) -> float:
    if len(text) > 64:
        raise JSONRefused("a number of more than 64 characters")
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused(f"the number {text[:24]} is beyond a 64-bit float")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONRefused(f"the key {key[:40]!r} appears twice in one object")
        result[key] = value
    return result


def _check(value: Any) -> None:
    """Walk the document without recursion: depth, and strings that are not valid UTF-8."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _encodable(item, path)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise JSONRefused(f"nested more than {MAX_DEPTH} levels deep", path)
            if isinstance(item, dict):
                for key, child in item.items():
                    _encodable(key, path)
                    stack.append((child, depth + 1, f"{path}.{key}" if path else key))
            else:
                stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))


def _encodable(text: str, path: str) -> None:
    if "\x00" in text:
        raise JSONRefused("a string holds a NUL character (\\u0000), which is not stored", path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JSONRefused(
            f"a string holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not text",
            path,
        ) from exc


def loads(text: str | bytes) -> Any:
    """Parse a JSON document strictly; raise json.JSONDecodeError or JSONRefused."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_int=_integer,
            parse_float=_float,
        )
    except RecursionError as exc:
        raise JSONRefused(f"nested more than {MAX_DEPTH} levels deep") from exc
    _check(value)
    return value
