"""The vocabulary of authorization: every object type and the actions the service asks about.

The views ask only these questions; `govern policy lint` refuses rules that name anything
else (they could never match), and diffs and who-can enumerate permissions over them.
Objects are `TYPE` or `TYPE/NAME` (a model family: `model/tax-assistant`).
"""

from __future__ import annotations

ACTIONS: dict[str, tuple[str, ...]] = {
    "domain": ("read", "create", "update"),
    "principal": ("read", "create"),
    "token": ("read", "create", "revoke"),
    "policy": ("read", "reload", "propose"),
    "dataset": ("read", "create", "upload", "delete"),
    "scan": ("read", "create"),
    "approval": ("read", "request", "decide"),
    "model": ("read", "create", "train", "promote", "query", "review"),
    "audit": ("read", "export", "checkpoint"),
    "report": ("read",),
    "authorization": ("query",),
    "job": ("claim",),
    "metrics": ("read",),
    "base-model": ("read", "withdraw"),
    "webhook": ("read", "redeliver"),
}

# Object types that are named per instance (model/NAME); the others are plain types.
NAMED = frozenset({"model"})

# The representative of "any name" when permissions are enumerated: `model/*` is matched by
# rules for `model/*`, and displayed as such.
ANY_NAME = "*"


def object_type(obj: str) -> str:
    return obj.split("/", 1)[0]


def enumerated_objects(extra: set[str] = frozenset()) -> list[str]:
    """Every object to ask about: plain types, `model/*`, and named objects rules mention."""
    objects = {t if t not in NAMED else f"{t}/{ANY_NAME}" for t in ACTIONS}
    objects |= {o for o in extra if "*" not in o and object_type(o) in ACTIONS}
    return sorted(objects)
