"""`govern policy test`: table-driven allow/deny cases against the real policy, as `opa test`.

Each file in `policies/tests/*.yaml` holds a description and cases, one question a line:

    cases:
      - allow: casey consumer-tax dataset upload     # SUBJECT DOMAIN OBJECT ACTION
      - deny:  casey smb-accounting dataset upload

A case may also ask routing.yaml which variant serves a query:

      - route: {family: tax-assistant, principal: taxbot, prompt_chars: 120, task: null,
                own_base: llama-8b,
                variants: {llama-1b: {score: 2.1, cost: 0.2},
                           llama-8b: {score: 2.0, cost: 1.0, healthy: false}}}
        expect: llama-1b
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from governance.authz.policy import PolicySet
from governance.gateway import routing

TESTS_DIR = "tests"


@dataclass(frozen=True)
class CaseResult:
    file: str
    index: int
    expected: str  # "allow", "deny", or "malformed"
    question: str
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        text = f"{status} {self.file} #{self.index + 1}: {self.expected} {self.question}"
        return f"{text}\n       {self.detail}" if self.detail and not self.passed else text


def test_files(directory: str | Path) -> list[Path]:
    return sorted((Path(directory) / TESTS_DIR).glob("*.yaml"))


def run_policy_tests(directory: str | Path, policy: PolicySet | None = None) -> list[CaseResult]:
    """Run every case of every test file; a file that cannot be read is one failed case."""
    policy = policy or PolicySet.load(directory)
    results: list[CaseResult] = []
    for path in test_files(directory):
        name = f"{TESTS_DIR}/{path.name}"
        try:
            cases = (yaml.safe_load(path.read_text()) or {}).get("cases") or []
        except (yaml.YAMLError, AttributeError) as exc:
            results.append(CaseResult(name, 0, "malformed", "", False, f"not a test file: {exc}"))
            continue
        for index, case in enumerate(cases):
            results.append(_run_case(policy, name, index, case))
    return results


def _run_route_case(directory: Path, name: str, index: int, case: dict) -> CaseResult:
    spec, expected = case.get("route"), case.get("expect")
    question = repr(spec)
    try:
        if not isinstance(spec, dict) or not isinstance(expected, str):
            raise ValueError("a routing case is `route: {...}` with `expect: VARIANT`")
        variants = [
            routing.Variant(
                str(variant),
                None if facts.get("score") is None else float(facts["score"]),
                float(facts.get("cost", 1.0)),
                bool(facts.get("healthy", True)),
            )
            for variant, facts in (spec.get("variants") or {}).items()
        ]
        request = routing.RouteRequest(
            str(spec.get("principal", "")), int(spec.get("prompt_chars", 0)), spec.get("task")
        )
        policy = routing.load(directory).for_family(str(spec.get("family", "")))
        choices = routing.route(policy, variants, request, str(spec.get("own_base", "")))
    except (ValueError, TypeError, AttributeError, routing.RoutingError) as exc:
        return CaseResult(name, index, "malformed", question, False, str(exc))
    got = choices[0].variant if choices else None
    detail = f"got {got} ({choices[0].reason})" if choices else "got no variant"
    return CaseResult(name, index, f"route to {expected}", question, got == expected, detail)


def _run_case(policy: PolicySet, name: str, index: int, case) -> CaseResult:
    if isinstance(case, dict) and "route" in case:
        return _run_route_case(Path(policy.directory), name, index, case)
    if not isinstance(case, dict) or len(case) != 1 or next(iter(case)) not in ("allow", "deny"):
        return CaseResult(
            name, index, "malformed", repr(case), False, "a case is `allow: ...` or `deny: ...`"
        )
    expected, question = next(iter(case.items()))
    parts = str(question).split()
    if len(parts) != 4:
        return CaseResult(
            name, index, expected, str(question), False, "expected SUBJECT DOMAIN OBJECT ACTION"
        )
    subject, domain, obj, action = parts
    decision = policy.decide(subject, domain, obj, action)
    passed = decision.allowed == (expected == "allow")
    if decision.allowed:
        detail = f"got allow, by rule: {', '.join(decision.rule or ())}"
    else:
        detail = "got deny: no rule allows it"
    return CaseResult(name, index, expected, " ".join(parts), passed, detail)
