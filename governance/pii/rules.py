"""Load the PII rules of policies/pii.yaml and resolve them for a domain."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from governance.errors import GovernanceError

RULES_FILE = "pii.yaml"
ACTIONS = ("replace", "drop", "block")
IDENTIFIER = "IDENTIFIER"
# What a scan must show before its version may train (pii.yaml `gate:`, per domain):
#   canary_recall      the least share of synthetic canaries, of every form, the scan finds
#   quarantine_share   the most records the residual pass may hold back awaiting a steward
#   label_sample       records of the sanitized view drawn for a steward to label (0: none)
#   recall_lower_bound the least 95% lower bound of the recall those labels estimate, before
#                      an approval to train on the version may be requested
DEFAULT_GATE = {
    "canary_recall": 0.95,
    "quarantine_share": 0.05,
    "label_sample": 0,
    "recall_lower_bound": 0.0,
}


class PiiRulesError(GovernanceError):
    status = 500
    code = "pii_rules_error"


@dataclass(frozen=True)
class EntityRule:
    entity: str
    action: str
    threshold: float


@dataclass(frozen=True)
class AllowPattern:
    name: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class DomainRules:
    """What the scanner acts on in one domain, and the hash that names this rule set."""

    domain: str | None
    entities: dict[str, EntityRule]
    allow: tuple[AllowPattern, ...]
    hash: str
    gate: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_GATE))
    # The record metadata field that names the customer (the unit of privacy of DP training):
    # the sanitized view carries only its keyed hash, as `unit`. None: no customer key.
    unit_key: str | None = None

    @property
    def label_sample(self) -> int:
        return int(self.gate.get("label_sample", 0))

    def rule_for(self, entity: str) -> EntityRule | None:
        return self.entities.get(entity)


def _entity_rules(section: dict[str, Any], default_threshold: float, where: str):
    rules = {}
    for entity, spec in (section or {}).items():
        spec = spec or {}
        action = spec.get("action", "replace")
        if action not in ACTIONS:
            raise PiiRulesError(f"{where}: {entity} has unknown action {action!r}")
        threshold = float(spec.get("threshold", default_threshold))
        if not 0 <= threshold <= 1:
            raise PiiRulesError(f"{where}: {entity} threshold must lie in 0..1")
        rules[entity] = EntityRule(entity, action, threshold)
    return rules


def _allow(items: list[dict[str, str]] | None, where: str) -> list[AllowPattern]:
    patterns = []
    for item in items or []:
        try:
            patterns.append(AllowPattern(item["name"], re.compile(item["pattern"])))
        except (KeyError, re.error) as exc:
            raise PiiRulesError(f"{where}: bad allow entry {item!r}: {exc}") from exc
    return patterns


def load_rules(policy_dir: str | Path, domain: str | None = None) -> DomainRules:
    """Return the rules in force for a domain (the defaults when domain is None or unlisted)."""
    path = Path(policy_dir) / RULES_FILE
    try:
        raw = path.read_bytes()
        document = yaml.safe_load(raw) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PiiRulesError(f"cannot read {path}: {exc}") from exc
    default = document.get("default") or {}
    threshold = float(default.get("threshold", 0.5))
    entities = _entity_rules(default.get("entities"), threshold, "default")
    allow = _allow(default.get("allow"), "default")
    section = (document.get("domains") or {}).get(domain) if domain else None
    if section:
        entities.update(_entity_rules(section.get("entities"), threshold, domain))
        allow += _allow(section.get("allow"), domain)
    # Fail closed: the identifier catch-all acts whatever a rules file forgets to say, and an
    # identifier may be dropped or blocked but never let through.
    entities.setdefault(IDENTIFIER, EntityRule(IDENTIFIER, "replace", 0.0))
    gate = {**DEFAULT_GATE, **(default.get("gate") or {}), **((section or {}).get("gate") or {})}
    for key, value in gate.items():
        limit = 10000 if key == "label_sample" else 1
        if (
            key not in DEFAULT_GATE
            or not isinstance(value, (int, float))
            or not 0 <= value <= limit
        ):
            raise PiiRulesError(
                f"gate: {key} must be one of {sorted(DEFAULT_GATE)}, in 0..1 "
                "(label_sample: a count, 0..10000)"
            )
    unit_key = (section or {}).get("unit_key")
    if unit_key is not None and (
        not isinstance(unit_key, str)
        or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}", unit_key)
    ):
        raise PiiRulesError(f"{domain}: unit_key must name a metadata field")
    resolved = {
        "domain": domain if section else None,
        "entities": {e: [r.action, r.threshold] for e, r in sorted(entities.items())},
        "allow": [[a.name, a.regex.pattern] for a in allow],
        "gate": sorted(gate.items()),
        # Only when set, so that the rules of every other domain keep their hash.
        **({"unit_key": unit_key} if unit_key else {}),
    }
    digest = hashlib.sha256(
        repr(sorted(resolved.items())).encode() + b"\n" + hashlib.sha256(raw).digest()
    ).hexdigest()
    return DomainRules(resolved["domain"], entities, tuple(allow), digest, gate, unit_key)
