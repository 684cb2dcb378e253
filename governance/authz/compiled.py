"""The policy compiled into indexes: a decision costs a few dictionary lookups at any size.

The policy files stay the source of truth and Casbin's model (`policies/model.conf`) the
definition of correct; this module answers the same questions from indexes built once, when
the policy loads, instead of evaluating the matcher against every rule (which pycasbin does,
at about 15 s a decision for 10^5 lines). The model it compiles:

    m = g(r.sub, p.sub, r.dom) && keyMatch(r.dom, p.dom) && keyMatch(r.obj, p.obj)
        && (r.act == p.act || p.act == "*")

with role bindings whose domain may be a keyMatch pattern (`add_named_domain_matching_func`),
and roles that may be bound to other roles. A decision names the rule Casbin would name: the
first allowing `p` line in file order. `tests/authz/test_compiled.py` checks, with generated
policies and requests, that every answer and every named rule agree with pycasbin's Enforcer.

Indexes:
- `bindings[subject]`: (role, domain pattern) pairs, in file order;
- `exact[(role, domain, object, action)]`: the first rule index with no pattern in it;
- `patterned[role]`: rules with a `*` in domain, object or action, kept apart (few in any
  real policy), each checked with keyMatch;
- reverse indexes for who-can questions: `holders[role]` (who is bound to it) and
  `granting[(object, action)]` (rules that may grant it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

Rule = tuple[str, str, str, str]  # sub, dom, obj, act as written in the p line


def key_match(key: str, pattern: str) -> bool:
    """Casbin's keyMatch: a `*` in the pattern matches any rest of the key."""
    star = pattern.find("*")
    if star == -1:
        return key == pattern
    if len(key) > star:
        return key[:star] == pattern[:star]
    return key == pattern[:star]


def _patterned(value: str) -> bool:
    return "*" in value


@dataclass
class CompiledPolicy:
    """The `p` and `g` lines of a policy, indexed for decisions and reverse lookups."""

    rules: list[Rule]
    bindings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    exact: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    patterned: dict[str, list[int]] = field(default_factory=dict)
    holders: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    granting: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, rules: Iterable[Rule], groupings: Iterable[tuple[str, str, str]]
    ) -> CompiledPolicy:
        """Index p lines (in file order) and g lines (subject, role, domain pattern)."""
        compiled = cls(rules=list(rules))
        bindings: dict[str, list[tuple[str, str]]] = defaultdict(list)
        holders: dict[str, list[tuple[str, str]]] = defaultdict(list)
        seen: set[tuple[str, str, str]] = set()
        for subject, role, domain in groupings:
            if (subject, role, domain) in seen:
                continue
            seen.add((subject, role, domain))
            bindings[subject].append((role, domain))
            holders[role].append((subject, domain))
        patterned: dict[str, list[int]] = defaultdict(list)
        granting: dict[str, list[int]] = defaultdict(list)
        exact: dict[tuple[str, str, str, str], int] = {}
        for index, (sub, dom, obj, act) in enumerate(compiled.rules):
            if _patterned(dom) or _patterned(obj) or act == "*":
                patterned[sub].append(index)
                granting["*"].append(index)
            else:
                exact.setdefault((sub, dom, obj, act), index)
                granting[obj].append(index)
        compiled.bindings = dict(bindings)
        compiled.holders = dict(holders)
        compiled.patterned = dict(patterned)
        compiled.granting = dict(granting)
        compiled.exact = exact
        return compiled

    def roles(self, subject: str, domain: str) -> list[str]:
        """The subject itself and every role it holds in the domain, directly or through
        roles bound to roles, in the order Casbin's role manager would reach them."""
        found = [subject]
        seen = {subject}
        position = 0
        while position < len(found):
            for role, pattern in self.bindings.get(found[position], ()):
                if role not in seen and key_match(domain, pattern):
                    seen.add(role)
                    found.append(role)
            position += 1
        return found

    def first_rule(self, subject: str, domain: str, obj: str, action: str) -> int | None:
        """The index of the first p line that allows the request, or None (deny)."""
        best: int | None = None
        for role in self.roles(subject, domain):
            index = self.exact.get((role, domain, obj, action))
            if index is not None and (best is None or index < best):
                best = index
            for index in self.patterned.get(role, ()):
                if best is not None and index > best:
                    break
                _sub, dom, pobj, act = self.rules[index]
                if (
                    (act == action or act == "*")
                    and key_match(domain, dom)
                    and key_match(obj, pobj)
                ):
                    best = index
                    break
        return best

    def allowed(self, subject: str, domain: str, obj: str, action: str) -> Rule | None:
        """The rule that allows the request, or None."""
        index = self.first_rule(subject, domain, obj, action)
        return None if index is None else self.rules[index]

    # --- reverse lookups ------------------------------------------------------------------

    def subjects_holding(self, role: str, domain: str) -> Iterator[str]:
        """Every name that holds `role` in `domain`, directly or through other roles."""
        seen = {role}
        frontier = [role]
        while frontier:
            current = frontier.pop()
            for subject, pattern in self.holders.get(current, ()):
                if subject not in seen and key_match(domain, pattern):
                    seen.add(subject)
                    frontier.append(subject)
                    yield subject

    def who_can(self, domain: str, obj: str, action: str) -> dict[str, Rule]:
        """Every principal (a name bound to some role, or named in a rule) that may perform
        action on obj in domain, with the rule that allows it."""
        candidates: set[str] = set()
        for index in (*self.granting.get(obj, ()), *self.granting.get("*", ())):
            sub, dom, pobj, act = self.rules[index]
            if (act == action or act == "*") and key_match(domain, dom) and key_match(obj, pobj):
                candidates.add(sub)
                candidates.update(self.subjects_holding(sub, domain))
        answer = {}
        for subject in candidates:
            rule = self.allowed(subject, domain, obj, action)
            if rule is not None:
                answer[subject] = rule
        return answer
