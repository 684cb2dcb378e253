"""Load policies/approvals.yaml: the reviewers each kind of request needs, per domain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from governance.errors import GovernanceError

APPROVALS_FILE = "approvals.yaml"
KINDS = ("dataset-use", "model-promotion", "base-model-use", "policy-change")
# Kinds decided in the policy's system domain, never in a data domain.
SYSTEM_KINDS = ("policy-change",)
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
    # policy-change only: roles that may put an unapproved policy in force in an emergency
    # (audited as such; the approval is requested after the fact). Empty: no such path.
    break_glass: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "required": list(self.required),
            "exclude": list(self.exclude),
            "expires_days": self.expires_days,
            "auto_approve": list(self.auto_approve),
        }
        if self.kind in SYSTEM_KINDS:
            found["break_glass"] = list(self.break_glass)
        return found


def _rule(kind: str, spec: Any, where: str) -> ApprovalRule:
    if kind not in KINDS:
        raise ApprovalRulesError(f"{where}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    if not isinstance(spec, dict):
        raise ApprovalRulesError(f"{where}.{kind}: expected a mapping")
    known = {"required", "exclude", "expires_days", "auto_approve"}
    if kind in SYSTEM_KINDS:
        known = (known - {"auto_approve"}) | {"break_glass"}
    unknown = set(spec) - known
    if unknown:
        raise ApprovalRulesError(f"{where}.{kind}: unknown keys {sorted(unknown)}")
    if kind in SYSTEM_KINDS and where != "default":
        raise ApprovalRulesError(
            f"{where}.{kind}: {kind} is decided in the system domain; set it under default"
        )
    if kind in SYSTEM_KINDS and not spec.get("required"):
        raise ApprovalRulesError(f"{where}.{kind}: name at least one required role")
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
    break_glass = spec.get("break_glass") or ()
    if not isinstance(break_glass, list | tuple) or not all(
        isinstance(role, str) and role for role in break_glass
    ):
        raise ApprovalRulesError(f"{where}.{kind}: break_glass must be a list of roles")
    return ApprovalRule(
        kind,
        required,
        exclude,
        days,
        tuple(spec.get("auto_approve") or ()),
        tuple(break_glass),
    )


@dataclass(frozen=True)
class ApprovalRules:
    """The whole file, parsed: defaults and per-domain overrides."""

    default: dict[str, ApprovalRule]
    domains: dict[str, dict[str, ApprovalRule]]

    def policy_change(self) -> ApprovalRule | None:
        """The rule for policy changes, or None when the rules require no approval for them."""
        return self.default.get("policy-change")

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
        text = path.read_text()
    except OSError as exc:
        raise ApprovalRulesError(f"cannot read {path}: {exc}") from exc
    return parse_approval_rules(text, str(path))


def parse_approval_rules(text: str, where: str = APPROVALS_FILE) -> ApprovalRules:
    """Parse the text of an approvals.yaml, or raise ApprovalRulesError."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ApprovalRulesError(f"cannot read {where}: {exc}") from exc
    if not isinstance(document, dict):
        raise ApprovalRulesError(f"{where}: expected a mapping")
    default = {
        kind: _rule(kind, spec, "default") for kind, spec in (document.get("default") or {}).items()
    }
    domains = {
        domain: {kind: _rule(kind, spec, domain) for kind, spec in (kinds or {}).items()}
        for domain, kinds in (document.get("domains") or {}).items()
    }
    return ApprovalRules(default, domains)
