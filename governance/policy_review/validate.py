"""A policy directory is put in force only if it lints without errors and passes its tests."""

from __future__ import annotations

from pathlib import Path

from governance.authz.policy import PolicySet
from governance.authz.service import PolicyRefused
from governance.policy_review.lint import lint
from governance.policy_review.policytest import run_policy_tests


def validate_policy(directory: str | Path) -> PolicySet:
    """Load a policy directory and refuse it if lint finds an error or a policy test fails."""
    policy = PolicySet.load(directory)
    problems = [str(p) for p in lint(directory) if p.severity == "error"]
    problems += [str(r) for r in run_policy_tests(directory, policy) if not r.passed]
    if problems:
        raise PolicyRefused(
            f"policy {policy.hash[:16]} refused: {len(problems)} problem(s); the old one stays",
            details={"policy_hash": policy.hash, "problems": problems[:50]},
        )
    return policy
