"""The privacy ledger of a data domain: what differentially private training has spent.

Every model version trained with DP records, in its lineage, the (epsilon, delta) its
accountant spent, the unit of privacy, its dataset versions, records, steps and noise. A
domain's rules (`policies/domains.yaml`, `privacy.budget`) set the total its customers may
bear over a rolling period of years. This product retrains every domain every year on
overlapping customers, so the versions compose:

- **Composition: the sum** (basic sequential composition) of every counting version's
  epsilon and delta. It holds for any mix of versions, mechanisms and overlaps, and it is an
  upper bound: versions trained on disjoint customers, or a joint RDP accounting of versions
  with known curves, would spend less. `tests/families/test_privacy.py` checks the sum
  against Opacus's own accountant, which is never above it.
- **What counts**: every DP version trained (or in training: its target is reserved, so two
  requests cannot both fit into the same remainder) within the period. A version whose data
  has since been deleted keeps counting until it is no longer served *and* its artifacts are
  destroyed (the trained weights still carry what it learned: its adapter is gone, so the
  version has no `adapter_key`); no command destroys a version's adapter yet, so in practice
  every DP version counts for the period. A version that failed before its
  worker trained anything counts nothing.
- **Versions trained without DP** carry no bound at all: the ledger lists them as unbounded,
  and a domain with `privacy.required` refuses to train them.

A DP training request that would take the total past the budget is refused when it is made,
with the numbers; the yearly refresh plans from what is left (`remaining`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from governance.db import utcnow
from governance.domains import settings as domain_settings
from governance.domains.models import Domain
from governance.errors import Conflict, InvalidInput
from governance.families.models import ModelFamily, ModelVersion, VersionState
from governance.pii.rules import load_rules


@dataclass
class LedgerEntry:
    family: str
    version: int
    tax_year: int
    status: str
    trained_at: str
    epsilon: float | None
    delta: float | None
    unit: str | None
    units: int | None
    records: int | None
    steps: int | None
    noise_multiplier: float | None
    datasets: list[str]
    counts: bool
    why: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Ledger:
    domain: str
    budget: dict[str, Any] | None
    unit_key: str | None
    required: bool
    since: str
    entries: list[LedgerEntry] = field(default_factory=list)

    @property
    def spent(self) -> tuple[float, float]:
        counting = [e for e in self.entries if e.counts and e.epsilon is not None]
        return (
            math.fsum(e.epsilon or 0.0 for e in counting),
            math.fsum(e.delta or 0.0 for e in counting),
        )

    @property
    def unbounded(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.epsilon is None and e.counts]

    @property
    def remaining(self) -> tuple[float, float] | None:
        if self.budget is None:
            return None
        epsilon, delta = self.spent
        return (
            max(0.0, self.budget["epsilon"] - epsilon),
            max(0.0, self.budget["delta"] - delta),
        )

    def as_dict(self) -> dict[str, Any]:
        epsilon, delta = self.spent
        remaining = self.remaining
        return {
            "domain": self.domain,
            "unit": "customer" if self.unit_key else "record",
            "unit_key": self.unit_key,
            "required": self.required,
            "budget": self.budget,
            "period_since": self.since,
            "composition": "sum of (epsilon, delta) over the counting versions (basic "
            "composition: an upper bound that holds for any overlap of customers)",
            "spent": {"epsilon": round(epsilon, 4), "delta": delta},
            "remaining": None
            if remaining is None
            else {"epsilon": round(remaining[0], 4), "delta": remaining[1]},
            "unbounded_versions": len(self.unbounded),
            "entries": [e.as_dict() for e in self.entries],
        }


def _entry(version: ModelVersion, family: ModelFamily) -> LedgerEntry | None:
    recipe = (version.training_config or {}).get("privacy")
    spent = (version.metrics or {}).get("privacy") or {}
    when = version.created_at.isoformat() if version.created_at else ""
    datasets = [str(u.get("uid")) for u in version.datasets or []]
    if recipe is None:
        counts = version.status != VersionState.FAILED
        return LedgerEntry(
            family.name, version.number, version.tax_year, version.status, when,
            None, None, None, None, (version.metrics or {}).get("train_records"), None, None,
            datasets, counts, "trained without differential privacy: no bound",
        )  # fmt: skip
    gone = version.status in (VersionState.TAINTED, VersionState.FAILED)
    if spent and gone and version.adapter_key is None:
        return LedgerEntry(
            family.name, version.number, version.tax_year, version.status, when,
            float(spent["epsilon"]), float(spent["delta"]), spent.get("unit"),
            spent.get("units"), (version.metrics or {}).get("train_records"),
            spent.get("steps"), spent.get("noise_multiplier"), datasets, False,
            "no longer served and its artifacts destroyed: it stopped counting",
        )  # fmt: skip
    if spent:
        return LedgerEntry(
            family.name, version.number, version.tax_year, version.status, when,
            float(spent["epsilon"]), float(spent["delta"]), spent.get("unit"),
            spent.get("units"), (version.metrics or {}).get("train_records"),
            spent.get("steps"), spent.get("noise_multiplier"), datasets, True,
            "spent, as its accountant reported (counts until it is no longer served and its "
            "artifacts are destroyed)",
        )  # fmt: skip
    if version.status == VersionState.FAILED:
        return LedgerEntry(
            family.name, version.number, version.tax_year, version.status, when,
            0.0, 0.0, None, None, None, None, None, datasets, False,
            "failed before any result: nothing spent",
        )  # fmt: skip
    return LedgerEntry(
        family.name, version.number, version.tax_year, version.status, when,
        float(recipe["epsilon"]), float(recipe["delta"]), None, None, None, None, None,
        datasets, True, "in training: its target is reserved",
    )  # fmt: skip


def ledger(
    session: Session, domain: Domain, policy_dir: str | Path, now: dt.datetime | None = None
) -> Ledger:
    """The domain's DP versions of its rolling period, with what they spent."""
    rules = domain_settings.privacy(policy_dir, domain.name)
    budget = rules.budget.model_dump() if rules.budget else None
    years = rules.budget.years if rules.budget else 5
    start = (now or utcnow()) - dt.timedelta(days=round(365.25 * years))
    unit_key = load_rules(policy_dir, domain.name).unit_key
    book = Ledger(domain.name, budget, unit_key, rules.required, start.date().isoformat())
    rows = session.exec(
        select(ModelVersion, ModelFamily)
        .join(ModelFamily, ModelFamily.id == ModelVersion.family_id)
        .where(ModelFamily.domain_id == domain.id, ModelVersion.created_at >= start)
        .order_by(ModelVersion.created_at, ModelVersion.id)
    ).all()
    for version, family in rows:
        entry = _entry(version, family)
        if entry is not None:
            book.entries.append(entry)
    return book


# The smallest epsilon a planned version may spend: below it the noise leaves nothing to learn,
# and the refresh waits for older versions to leave the period instead.
MIN_PLANNED_EPSILON = 0.1


def plan(
    session: Session, family: ModelFamily, domain: Domain, policy_dir: str | Path
) -> dict[str, Any] | None:
    """What the next version of a DP family may spend: the recipe's epsilon, or what is left
    of the domain's budget when that is less (the yearly refresh plans with this, and says so
    in the approval it asks for). None for a family trained without DP."""
    recipe = family.privacy
    if recipe is None:
        return None
    book = ledger(session, domain, policy_dir)
    remaining = book.remaining
    planned = {
        "epsilon": float(recipe["epsilon"]),
        "delta": float(recipe["delta"]),
        "recipe_epsilon": float(recipe["epsilon"]),
        "spent": {"epsilon": round(book.spent[0], 4), "delta": book.spent[1]},
        "remaining": None
        if remaining is None
        else {"epsilon": round(remaining[0], 4), "delta": remaining[1]},
        "unit": "customer" if book.unit_key else "record",
    }
    if remaining is not None:
        planned["epsilon"] = round(min(planned["epsilon"], remaining[0]), 4)
        planned["delta"] = min(planned["delta"], remaining[1])
    planned["fits"] = planned["epsilon"] >= MIN_PLANNED_EPSILON and planned["delta"] > 0
    return planned


def check_training(
    session: Session,
    family: ModelFamily,
    domain: Domain,
    policy_dir: str | Path,
    epsilon: float | None = None,
) -> dict[str, Any] | None:
    """The privacy block of a new version's training config, or a refusal with the numbers:
    the domain requires DP and the family's recipe has none, or the recipe's epsilon or delta
    would take the domain past its budget."""
    rules = domain_settings.privacy(policy_dir, domain.name)
    recipe = family.privacy
    if recipe is not None and epsilon is not None:
        # A planned epsilon (the refresh's, from what is left) replaces the recipe's, never
        # upwards.
        recipe = {**recipe, "epsilon": min(float(recipe["epsilon"]), epsilon)}
    if recipe is None:
        if rules.required:
            raise InvalidInput(
                f"domain {domain.name} requires differential privacy: give family "
                f"{family.name} a privacy recipe (epsilon, delta)",
                details={"field": "privacy", "domain": domain.name},
            )
        return None
    if rules.budget is not None:
        book = ledger(session, domain, policy_dir)
        epsilon, delta = book.spent
        budget = rules.budget
        if epsilon + recipe["epsilon"] > budget.epsilon + 1e-9 or (
            delta + recipe["delta"] > budget.delta * (1 + 1e-9)
        ):
            raise Conflict(
                f"privacy budget of {domain.name} exceeded: {epsilon:.4g} of epsilon "
                f"{budget.epsilon:g} spent over {budget.years} years (delta {delta:.3g} of "
                f"{budget.delta:.3g}); this version would add epsilon {recipe['epsilon']:g}, "
                f"delta {recipe['delta']:.3g}. Lower the family's epsilon to at most "
                f"{max(0.0, budget.epsilon - epsilon):.4g}, or wait until older versions "
                "leave the period",
                details={
                    "domain": domain.name,
                    "budget": budget.model_dump(),
                    "spent": {"epsilon": epsilon, "delta": delta},
                    "requested": {"epsilon": recipe["epsilon"], "delta": recipe["delta"]},
                    "remaining": {
                        "epsilon": max(0.0, budget.epsilon - epsilon),
                        "delta": max(0.0, budget.delta - delta),
                    },
                },
                code="privacy_budget_exceeded",
            )
    return {**recipe, "unit_key": load_rules(policy_dir, domain.name).unit_key}
