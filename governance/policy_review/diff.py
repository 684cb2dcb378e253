"""`govern policy diff` and `who-can`: effective permissions, and how a change moves them.

A diff compares what every principal may actually do, not the text of the rules: each
principal x domain x object x action is asked of both versions' enforcers, and the answers
that differ are listed, with the rule that grants each gained permission. Changes to the
approval and PII rules are listed setting by setting.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from governance.approvals.rules import APPROVALS_FILE
from governance.authz.catalog import ACTIONS, enumerated_objects, object_type
from governance.authz.compiled import key_match
from governance.authz.policy import POLICY_FILE, SYSTEM_DOMAIN, PolicySet
from governance.errors import InvalidInput
from governance.gateway.guardrails import GUARDRAILS_FILE
from governance.gateway.routing import ROUTING_FILE
from governance.pii.rules import RULES_FILE
from governance.policy_review.lint import declared_domains, read_rules

Permission = tuple[str, str, str, str]  # principal, domain, object, action


@dataclass(frozen=True)
class Universe:
    """What to ask about: principals, domains and objects that either version mentions."""

    principals: tuple[str, ...]
    domains: tuple[str, ...]
    objects: tuple[str, ...]

    @classmethod
    def of(cls, *directories: Path) -> Universe:
        principals, domains, objects = set(), {SYSTEM_DOMAIN}, set()
        for directory in directories:
            rules, _problems = read_rules(directory / POLICY_FILE)
            declared, _problems = declared_domains(directory)
            domains |= declared
            for rule in rules:
                if rule.ptype == "g":
                    principals.add(rule.fields[0])
                    if "*" not in rule.fields[2]:
                        domains.add(rule.fields[2])
                else:
                    objects.add(rule.fields[2])
                    if "*" not in rule.fields[1]:
                        domains.add(rule.fields[1])
        return cls(
            tuple(sorted(principals)), tuple(sorted(domains)), tuple(enumerated_objects(objects))
        )

    @classmethod
    def of_policy(cls, policy: PolicySet) -> Universe:
        """The universe of a loaded policy, from its compiled lines (no second parse)."""
        declared, _problems = declared_domains(policy.directory)
        domains = {SYSTEM_DOMAIN, *declared}
        domains |= {g[2] for g in policy.groupings if "*" not in g[2]}
        domains |= {r[1] for r in policy.rules if "*" not in r[1]}
        objects = {r[2] for r in policy.rules}
        return cls(
            tuple(sorted({g[0] for g in policy.groupings})),
            tuple(sorted(domains)),
            tuple(enumerated_objects(objects)),
        )


def effective_permissions(
    policy: PolicySet, universe: Universe, domains: tuple[str, ...] | None = None
) -> dict[Permission, tuple]:
    """Every allowed (principal, domain, object, action), with the rule that allows it.

    Computed from the rules outward, not by asking every question: each p line is expanded to
    the domains, objects and actions of the universe it matches, and to the principals that
    hold its role there (the compiled policy's reverse index). Each permission found is then
    decided, so the rule shown is the one a decision names. Cost follows the permissions that
    exist, not principals x domains x objects x actions.
    """
    compiled = policy.compiled
    principals = set(universe.principals)
    wanted = universe.domains if domains is None else domains
    objects_for: dict[str, list[str]] = {}
    candidates: set[Permission] = set()
    for role, rule_domain, rule_object, rule_action in compiled.rules:
        if rule_object not in objects_for:
            objects_for[rule_object] = [o for o in universe.objects if key_match(o, rule_object)]
        pairs = [
            (obj, action)
            for obj in objects_for[rule_object]
            for action in ACTIONS[object_type(obj)]
            if rule_action in (action, "*")
        ]
        if not pairs:
            continue
        for domain in wanted:
            if not key_match(domain, rule_domain):
                continue
            holders = {role, *compiled.subjects_holding(role, domain)} & principals
            for principal in holders:
                for obj, action in pairs:
                    candidates.add((principal, domain, obj, action))
    allowed = {}
    for permission in candidates:
        decision = policy.decide(*permission)
        if decision.allowed:
            allowed[permission] = decision.rule or ()
    return allowed


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A YAML document as `a.b.c: leaf` pairs (lists stay whole), for setting-level diffs."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _settings(directory: Path, name: str) -> dict[str, Any]:
    path = directory / name
    if not path.is_file():
        return {}
    try:
        return flatten(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError:
        return {"(unreadable)": path.read_text()}


@dataclass
class PolicyDiff:
    base: str
    head: str
    base_hash: str
    head_hash: str
    gained: list[tuple[Permission, tuple]]
    lost: list[tuple[Permission, tuple]]
    settings: dict[str, list[tuple[str, Any, Any]]]  # file -> (key, before, after)

    @property
    def empty(self) -> bool:
        return not (self.gained or self.lost or any(self.settings.values()))

    def as_text(self) -> str:
        lines = [
            f"policy diff {self.base} -> {self.head}",
            f"  policy hash {self.base_hash[:16]} -> {self.head_hash[:16]}",
        ]
        if self.empty:
            return "\n".join([*lines, "no change in effective permissions or rules"])
        lines.append(f"permissions: {len(self.gained)} gained, {len(self.lost)} lost")
        for sign, items in (("+", self.gained), ("-", self.lost)):
            for (principal, domain, obj, action), rule in items:
                via = f"   (rule: {', '.join(rule)})" if rule else ""
                lines.append(f"{sign} {principal:<14} {domain:<16} {obj:<16} {action:<10}{via}")
        for name, changes in self.settings.items():
            if changes:
                lines.append(f"{name}:")
                lines += [f"~ {key}: {before!r} -> {after!r}" for key, before, after in changes]
        return "\n".join(lines)

    def as_markdown(self) -> str:
        lines = [
            f"### Policy diff `{self.base}` → `{self.head}`",
            "",
            f"Policy hash `{self.base_hash[:16]}` → `{self.head_hash[:16]}`.",
            "",
        ]
        if self.empty:
            return "\n".join([*lines, "No change in effective permissions or rules.", ""])
        if self.gained or self.lost:
            lines += [
                f"**Permissions:** {len(self.gained)} gained, {len(self.lost)} lost.",
                "",
                "| change | principal | domain | object | action | granted by |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for label, items in (("gained", self.gained), ("lost", self.lost)):
                for (principal, domain, obj, action), rule in items:
                    granted = f"`{', '.join(rule)}`" if rule else ""
                    lines.append(
                        f"| {label} | {principal} | {domain} | `{obj}` | {action} | {granted} |"
                    )
            lines.append("")
        for name, changes in self.settings.items():
            if changes:
                lines += [f"**{name}**", "", "| setting | before | after |", "| --- | --- | --- |"]
                lines += [f"| `{k}` | `{b!r}` | `{a!r}` |" for k, b, a in changes]
                lines.append("")
        return "\n".join(lines)


def diff_directories(base: Path, head: Path, base_name: str, head_name: str) -> PolicyDiff:
    """Compare two policy directories."""
    before_policy, after_policy = PolicySet.load(base), PolicySet.load(head)
    universe = Universe.of(base, head)
    before = effective_permissions(before_policy, universe)
    after = effective_permissions(after_policy, universe)
    settings = {}
    for name in (APPROVALS_FILE, RULES_FILE, ROUTING_FILE, GUARDRAILS_FILE):
        old, new = _settings(base, name), _settings(head, name)
        settings[name] = [
            (key, old.get(key), new.get(key))
            for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)
        ]
    return PolicyDiff(
        base_name,
        head_name,
        before_policy.hash,
        after_policy.hash,
        gained=[(p, after[p]) for p in sorted(set(after) - set(before))],
        lost=[(p, before[p]) for p in sorted(set(before) - set(after))],
        settings=settings,
    )


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise InvalidInput(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@contextmanager
def checkout(policy_dir: Path, revision: str) -> Iterator[Path]:
    """Materialize the policy directory as it was at a git revision, in a temporary folder."""
    policy_dir = policy_dir.resolve()
    top = Path(_git(policy_dir, "rev-parse", "--show-toplevel").strip())
    relative = policy_dir.relative_to(top).as_posix()
    _git(top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    names = _git(top, "ls-tree", "-r", "--name-only", revision, "--", relative).splitlines()
    if not names:
        raise InvalidInput(f"revision {revision} has no {relative}/")
    with tempfile.TemporaryDirectory(prefix="policy-") as scratch:
        root = Path(scratch)
        for name in names:
            target = root / Path(name).relative_to(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            content = subprocess.run(
                ["git", "show", f"{revision}:{name}"], cwd=top, capture_output=True, check=True
            ).stdout
            target.write_bytes(content)
        yield root


def diff_revisions(policy_dir: Path, base: str, head: str | None) -> PolicyDiff:
    """Diff the policy at git revision `base` against `head` (the working tree when None)."""
    with checkout(policy_dir, base) as before:
        if head is None:
            return diff_directories(before, policy_dir, base, "working tree")
        with checkout(policy_dir, head) as after:
            return diff_directories(before, after, base, head)


def who_can(policy: PolicySet, action: str, obj: str, domain: str) -> list[tuple[str, tuple]]:
    """Every principal the policy names who may perform action on obj in domain, with the rule.

    A reverse lookup in the compiled policy: the rules that may grant it, then who holds
    their roles in the domain.
    """
    named = policy.compiled.bindings
    found = policy.compiled.who_can(domain, obj, action)
    return sorted((principal, rule) for principal, rule in found.items() if principal in named)
