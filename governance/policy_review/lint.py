"""`govern policy lint`: find what is wrong with a policy directory before it is merged.

Errors make the policy unusable (the running service refuses to load it); warnings point at
rules that grant nothing or too much. Every problem names its file and line.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from governance.approvals.rules import APPROVALS_FILE, ApprovalRulesError, load_approval_rules
from governance.authz.catalog import ACTIONS, object_type
from governance.authz.files import Problem, read_rules
from governance.authz.policy import MODEL_FILE, POLICY_FILE, SYSTEM_DOMAIN, PolicyError, PolicySet
from governance.domains import settings as domain_settings
from governance.domains.settings import DOMAINS_FILE
from governance.families import criteria
from governance.gateway import guardrails, routing
from governance.pii.rules import RULES_FILE, PiiRulesError, load_rules

ADMIN_ROLE = "admin"


def declared_domains(root: Path) -> tuple[set[str], list[Problem]]:
    path = root / DOMAINS_FILE
    if not path.is_file():
        return set(), [Problem(DOMAINS_FILE, 0, "error", "missing: declare the data domains")]
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        return set(), [Problem(DOMAINS_FILE, 0, "error", f"not valid YAML: {exc}")]
    domains = document.get("domains") or {}
    if not isinstance(domains, dict):
        return set(), [Problem(DOMAINS_FILE, 0, "error", "`domains` must be a mapping")]
    return set(domains), []


def lint(directory: str | Path, principals: set[str] | None = None) -> list[Problem]:
    """Lint a policy directory; `principals`, when given, are those of a live instance."""
    root = Path(directory)
    problems: list[Problem] = []
    for name in (MODEL_FILE, POLICY_FILE):
        if not (root / name).is_file():
            problems.append(Problem(name, 0, "error", "missing"))
    if problems:
        return problems
    try:
        PolicySet.load(root)
    except PolicyError as exc:
        problems.append(Problem(POLICY_FILE, 0, "error", f"Casbin cannot load it: {exc}"))
    rules, shape = read_rules(root / POLICY_FILE)
    problems += shape
    domains, domain_problems = declared_domains(root)
    problems += domain_problems
    known_domains = domains | {SYSTEM_DOMAIN}
    grants = [r for r in rules if r.ptype == "p"]
    bindings = [r for r in rules if r.ptype == "g"]
    defined_roles = {r.fields[0] for r in grants}
    bound_in: dict[str, set[str]] = defaultdict(set)
    for rule in bindings:
        bound_in[rule.fields[1]].add(rule.fields[2])

    seen: dict[tuple[str, ...], int] = {}
    for rule in rules:
        key = (rule.ptype, *rule.fields)
        if key in seen:
            problems.append(Problem(POLICY_FILE, rule.line, "warning", f"repeats line {seen[key]}"))
        seen.setdefault(key, rule.line)

    for rule in grants:
        role, domain, obj, action = rule.fields
        kind = object_type(obj)
        if obj != "*" and kind not in ACTIONS:
            problems.append(
                Problem(POLICY_FILE, rule.line, "error", f"object {obj!r}: nothing defines it")
            )
        elif action != "*" and action not in ACTIONS.get(kind, ()) and obj != "*":
            problems.append(
                Problem(
                    POLICY_FILE,
                    rule.line,
                    "error",
                    f"action {action!r} on {kind}: nothing defines it "
                    f"(known: {', '.join(ACTIONS[kind])})",
                )
            )
        if domain != "*" and "*" not in domain and domain not in known_domains:
            problems.append(
                Problem(POLICY_FILE, rule.line, "error", f"domain {domain!r}: nothing defines it")
            )
        if "*" in domain and domain != "*":
            problems.append(
                Problem(
                    POLICY_FILE, rule.line, "warning", f"domain pattern {domain!r} is a wildcard"
                )
            )
        if role not in bound_in:
            problems.append(
                Problem(
                    POLICY_FILE,
                    rule.line,
                    "warning",
                    f"can never match: nobody holds role {role!r}",
                )
            )
        elif domain != "*" and "*" not in bound_in[role] and domain not in bound_in[role]:
            problems.append(
                Problem(
                    POLICY_FILE,
                    rule.line,
                    "warning",
                    f"can never match: nobody holds role {role!r} in {domain}",
                )
            )
        if role != ADMIN_ROLE and (obj == "*" or action == "*"):
            problems.append(
                Problem(POLICY_FILE, rule.line, "warning", f"role {role!r} is granted a wildcard")
            )

    for rule in bindings:
        principal, role, domain = rule.fields
        if role not in defined_roles:
            problems.append(
                Problem(POLICY_FILE, rule.line, "error", f"role {role!r}: nothing defines it")
            )
        if "*" in domain:
            if role != ADMIN_ROLE:
                problems.append(
                    Problem(
                        POLICY_FILE,
                        rule.line,
                        "warning",
                        f"{principal} holds {role} in every domain (wildcard {domain!r})",
                    )
                )
        elif domain not in known_domains:
            problems.append(
                Problem(POLICY_FILE, rule.line, "error", f"domain {domain!r}: nothing defines it")
            )
        if principal in defined_roles and (principal, role) != (ADMIN_ROLE, ADMIN_ROLE):
            problems.append(
                Problem(
                    POLICY_FILE,
                    rule.line,
                    "error",
                    f"{principal!r} is both a principal and a role: Casbin would give that "
                    "principal the role's grants in every domain",
                )
            )
        if principals is not None and principal not in principals:
            problems.append(
                Problem(
                    POLICY_FILE,
                    rule.line,
                    "warning",
                    f"principal {principal!r} does not exist in this instance",
                )
            )
    if principals is not None:
        holders = {r.fields[0] for r in bindings}
        for name in sorted(principals & (defined_roles - {ADMIN_ROLE})):
            problems.append(
                Problem(
                    POLICY_FILE,
                    0,
                    "error",
                    f"principal {name!r} is named like a role and would hold it everywhere",
                )
            )
        for name in sorted(principals - holders):
            problems.append(
                Problem(POLICY_FILE, 0, "warning", f"principal {name!r} holds no role anywhere")
            )

    problems += _lint_pii(root, known_domains)
    problems += _lint_approvals(root, domains, grants, bindings)
    problems += [Problem(routing.ROUTING_FILE, 0, "error", m) for m in routing.lint(root)]
    problems += [
        Problem(guardrails.GUARDRAILS_FILE, 0, "error", m) for m in guardrails.lint(root, domains)
    ]
    problems += [Problem(DOMAINS_FILE, 0, "error", m) for m in domain_settings.lint(root)]
    problems += [Problem(f, 0, "error", m) for f, m in criteria.lint(root, known_domains)]
    return sorted(set(problems))


def _lint_pii(root: Path, known_domains: set[str]) -> list[Problem]:
    if not (root / RULES_FILE).is_file():
        return [Problem(RULES_FILE, 0, "error", "missing")]
    problems = []
    try:
        document = yaml.safe_load((root / RULES_FILE).read_text()) or {}
        load_rules(root)
        for domain in document.get("domains") or {}:
            load_rules(root, domain)
            if domain not in known_domains:
                problems.append(
                    Problem(RULES_FILE, 0, "error", f"domain {domain!r}: nothing defines it")
                )
    except (PiiRulesError, yaml.YAMLError) as exc:
        problems.append(Problem(RULES_FILE, 0, "error", str(exc)))
    return problems


def _lint_approvals(root: Path, domains: set[str], grants, bindings) -> list[Problem]:
    if not (root / APPROVALS_FILE).is_file():
        return [Problem(APPROVALS_FILE, 0, "error", "missing")]
    try:
        rules = load_approval_rules(root)
    except ApprovalRulesError as exc:
        return [Problem(APPROVALS_FILE, 0, "error", str(exc))]
    problems = []
    deciders = {r.fields[0] for r in grants if r.fields[2] in ("approval", "*")}
    deciders &= {
        r.fields[0] for r in grants if r.fields[3] in ("decide", "*") or r.fields[0] == ADMIN_ROLE
    }
    for domain in sorted(set(rules.domains) - domains):
        problems.append(
            Problem(APPROVALS_FILE, 0, "error", f"domain {domain!r}: nothing defines it")
        )
    for domain in sorted(domains):
        for kind in ("dataset-use", "model-promotion"):
            try:
                rule = rules.rule_for(domain, kind)
            except ApprovalRulesError as exc:
                problems.append(Problem(APPROVALS_FILE, 0, "error", str(exc)))
                continue
            for role in rule.required:
                if role not in deciders:
                    problems.append(
                        Problem(
                            APPROVALS_FILE,
                            0,
                            "error",
                            f"{domain} {kind}: role {role!r} may not decide approvals",
                        )
                    )
                holders = {
                    r.fields[0] for r in bindings if r.fields[1] == role and r.fields[2] == domain
                }
                # The trainer (an ml-engineer) may not fill a promotion's role: a second
                # holder must exist, or such requests can never be approved.
                needed = 2 if "trainer" in rule.exclude and role == "ml-engineer" else 1
                if len(holders) < needed:
                    problems.append(
                        Problem(
                            APPROVALS_FILE,
                            0,
                            "warning",
                            f"{domain} {kind}: needs {needed} holder(s) of {role!r}, "
                            f"the policy binds {len(holders)}",
                        )
                    )
    change = rules.policy_change()
    if change is not None:
        # Decided in the system domain: each required role must be able to decide there and
        # be held there by someone, or no policy change could ever be approved.
        for role in change.required:
            if role not in deciders:
                problems.append(
                    Problem(
                        APPROVALS_FILE,
                        0,
                        "error",
                        f"policy-change: role {role!r} may not decide approvals",
                    )
                )
            holders = {
                r.fields[0]
                for r in bindings
                if r.fields[1] == role and r.fields[2] in (SYSTEM_DOMAIN, "*")
            }
            if not holders:
                problems.append(
                    Problem(
                        APPROVALS_FILE,
                        0,
                        "error",
                        f"policy-change: nobody holds {role!r} in the system domain, so no "
                        "policy change could be approved",
                    )
                )
    return problems
