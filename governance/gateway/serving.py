"""The serving variants of a model family, kept by a process between queries."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from governance.families import service as families
from governance.families.models import ModelFamily
from governance.gateway import routing
from governance.gateway.backends import Servable, servable


@dataclass(frozen=True)
class ServingVersion:
    """What a query needs of a version that may serve it (kept between queries)."""

    number: int
    uid: str
    base_model_id: int
    evaluation: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Candidate:
    """One variant of a family that may serve: its base, the version and what serves it."""

    base_name: str
    weights_bytes: int
    servable: Servable
    version: ServingVersion


class ServingCache:
    """The serving variants of each family as this process last read them, with the
    family's serving revision then. The database adds one to a family's revision on every
    change to its versions (a trigger), and the gateway reads the family (with its revision)
    on every query, so a promotion, a rollback or a taint is seen by the next query; until
    then a query reads no version rows."""

    def __init__(self) -> None:
        self._families: dict[int, tuple[int, list[Candidate]]] = {}
        self._lock = threading.Lock()

    def candidates(self, session: Session, family: ModelFamily) -> list[Candidate]:
        family_id, revision = int(family.id or 0), family.serving_revision
        kept = self._families.get(family_id)
        if kept is not None and kept[0] == revision:
            return kept[1]
        found = [
            Candidate(
                base.name,
                routing.weights_size(base.path),
                servable(version, base, signed=True),
                ServingVersion(
                    version.number,
                    version.uid,
                    version.base_model_id,
                    dict(version.evaluation or {}),
                    dict(version.metrics or {}),
                ),
            )
            for base, version in families.serving_variants(session, family)
        ]
        with self._lock:
            self._families[family_id] = (revision, found)
        return found
