"""The kinds of subject an approval request can bind, and how each recomputes its digest.

Approvals are a generic mechanism: the package that owns a kind of subject (dataset use in
`governance.datasets.approval`, promotion in `governance.families.service`, base-model use in
`governance.families.intake`) registers its
resolver explicitly when a process starts (`governance.runtime.register_subject_kinds`: the
app factory, the CLI, the runner and the scheduler call it), so this package depends on none
of them. Reading a request whose kind has no resolver is an error, never a silent verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmodel import Session

    from governance.approvals.models import ApprovalRequest

DATASET_USE = "dataset-use"
MODEL_PROMOTION = "model-promotion"
BASE_MODEL_USE = "base-model-use"

# (session, request, policy_dir) -> the subject's digest now, or None if it is gone.
Resolver = Callable[["Session", "ApprovalRequest", Path], "str | None"]

_RESOLVERS: dict[str, Resolver] = {}


def register(kind: str, resolver: Resolver) -> None:
    """Say how to recompute the digest of a kind of subject (idempotent)."""
    _RESOLVERS[kind] = resolver


def resolver_for(kind: str) -> Resolver | None:
    return _RESOLVERS.get(kind)


def registered() -> frozenset[str]:
    return frozenset(_RESOLVERS)
