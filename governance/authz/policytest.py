"""`govern policy test`: table-driven allow/deny cases against the real policy, as `opa test`.

Each file in `policies/tests/*.yaml` holds a description and cases, one question a line:

    cases:
      - allow: casey consumer-tax dataset upload     # SUBJECT DOMAIN OBJECT ACTION
      - deny:  casey smb-accounting dataset upload
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from governance.authz.policy import PolicySet

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


def _run_case(policy: PolicySet, name: str, index: int, case) -> CaseResult:
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
