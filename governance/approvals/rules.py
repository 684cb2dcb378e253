"""Load policies/approvals.yaml: the reviewers each kind of request needs, per domain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from governance.errors import GovernanceError

APPROVALS_FILE = "approvals.yaml"
KINDS = ("dataset-use", "model-promotion", "base-model-use")
EXCLUSIONS = ("requester", "trainer")


class ApprovalRulesError(GovernanceError):
    status = 500
    code = "approval_rules_error"


@dataclass(frozen=True)
class ApprovalRule:
    """What one kind of request needs in one domain."""

    kind: str
    required: tuple[str, ...]
    exclude: tuple[str, ...]
    expires_days: int
    auto_approve: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "required": list(self.required),
            "exclude": list(self.exclude),
            "expires_days": self.expires_days,
            "auto_approve": list(self.auto_approve),
        }


def _rule(kind: str, spec: Any, where: str) -> ApprovalRule:
    if kind not in KINDS:
        raise ApprovalRulesError(f"{where}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    if not isinstance(spec, dict):
        raise ApprovalRulesError(f"{where}.{kind}: expected a mapping")
    unknown = set(spec) - {"required", "exclude", "expires_days", "auto_approve"}
    if unknown:
        raise ApprovalRulesError(f"{where}.{kind}: unknown keys {sorted(unknown)}")
    required = tuple(spec.get("required") or ())
    if len(set(required)) != len(required):
        raise ApprovalRulesError(f"{where}.{kind}: a role is required twice")
    exclude = tuple(spec.get("exclude") or ("requester",))
    if "requester" not in exclude or set(exclude) - set(EXCLUSIONS):
        raise ApprovalRulesError(
            f"{where}.{kind}: exclude must contain requester and only {', '.join(EXCLUSIONS)}"
        )
    days = spec.get("expires_days", 30)
    if not isinstance(days, int) or not 1 <= days <= 3650:
        raise ApprovalRulesError(f"{where}.{kind}: expires_days must be 1..3650")
    return ApprovalRule(kind, required, exclude, days, tuple(spec.get("auto_approve") or ()))


@dataclass(frozen=True)
class ApprovalRules:
    """The whole file, parsed: defaults and per-domain overrides."""

    default: dict[str, ApprovalRule]
    domains: dict[str, dict[str, ApprovalRule]]

    def rule_for(self, domain: str, kind: str) -> ApprovalRule:
        """Return the rule in force for a kind of request in a domain."""
        rule = self.domains.get(domain, {}).get(kind) or self.default.get(kind)
        if rule is None:
            raise ApprovalRulesError(f"approvals.yaml has no rule for {kind} in {domain}")
        return rule

    def flatten(self) -> dict[str, Any]:
        """Every setting as `section.kind.key: value`, for diffs."""
        flat: dict[str, Any] = {}
        sections = {"default": self.default, **{f"domains.{d}": k for d, k in self.domains.items()}}
        for name, kinds in sections.items():
            for kind, rule in kinds.items():
                for key, value in rule.as_dict().items():
                    flat[f"{name}.{kind}.{key}"] = value
        return flat


def load_approval_rules(policy_dir: str | Path) -> ApprovalRules:
    """Parse approvals.yaml of a policy directory, or raise ApprovalRulesError."""
    path = Path(policy_dir) / APPROVALS_FILE
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ApprovalRulesError(f"cannot read {path}: {exc}") from exc
    default = {
        kind: _rule(kind, spec, "default") for kind, spec in (document.get("default") or {}).items()
    }
    domains = {
        domain: {kind: _rule(kind, spec, domain) for kind, spec in (kinds or {}).items()}
        for domain, kinds in (document.get("domains") or {}).items()
    }
    return ApprovalRules(default, domains)
