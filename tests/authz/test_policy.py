"""The shipped policy, enforced by Casbin itself: table-driven allow and deny cases."""

from __future__ import annotations

import pytest

from governance.authz.policy import PolicyError, PolicySet, policy_hash
from governance.config import DEFAULT_POLICY_DIR


@pytest.fixture(scope="module")
def policy() -> PolicySet:
    return PolicySet.load(DEFAULT_POLICY_DIR)


REQUIRED_ROLES = {
    "admin",
    "data-steward",
    "privacy-reviewer",
    "legal-reviewer",
    "ml-engineer",
    "model-consumer",
    "auditor",
}
CASES = [
    # subject, domain, object, action, allowed
    ("admin", "consumer-tax", "dataset", "delete", True),
    ("admin", "system", "principal", "create", True),
    ("admin", "some-new-domain", "domain", "read", True),
    ("casey", "consumer-tax", "dataset", "upload", True),
    ("casey", "consumer-tax", "domain", "read", True),
    ("casey", "smb-accounting", "dataset", "upload", False),
    ("casey", "smb-accounting", "domain", "read", False),
    ("casey", "consumer-tax", "approval", "decide", False),
    ("casey", "system", "principal", "create", False),
    ("priya", "consumer-tax", "approval", "decide", True),
    ("priya", "smb-accounting", "approval", "decide", True),
    ("priya", "consumer-tax", "dataset", "upload", False),
    ("morgan", "consumer-tax", "model/tax-assistant", "train", True),
    ("morgan", "smb-accounting", "model/books-assistant", "train", False),
    ("taxbot", "consumer-tax", "model/tax-assistant", "query", True),
    ("taxbot", "consumer-tax", "model/tax-assistant", "train", False),
    ("taxbot", "smb-accounting", "model/books-assistant", "query", False),
    ("audrey", "consumer-tax", "audit", "export", True),
    ("audrey", "consumer-tax", "dataset", "delete", False),
    ("stranger", "consumer-tax", "domain", "read", False),
    ("stranger", "system", "principal", "read", False),
]


@pytest.mark.parametrize(("subject", "domain", "obj", "action", "allowed"), CASES)
def test_shipped_policy(policy, subject, domain, obj, action, allowed):
    decision = policy.decide(subject, domain, obj, action)
    assert decision.allowed is allowed
    assert decision.policy_hash == policy.hash
    if allowed:
        assert decision.rule is not None and decision.rule[0] in REQUIRED_ROLES
    else:
        assert decision.rule is None


def test_every_required_role_is_defined(policy):
    roles = {rule[0] for rule in policy.enforcer.get_policy()}
    assert roles >= REQUIRED_ROLES


def test_role_bindings(policy):
    assert policy.role_bindings("admin") == [("*", "admin")]
    assert ("consumer-tax", "data-steward") in policy.role_bindings("casey")


def test_policy_hash_changes_with_any_file(tmp_path):
    for name in ("model.conf", "policy.csv"):
        (tmp_path / name).write_bytes((DEFAULT_POLICY_DIR / name).read_bytes())
    first = policy_hash(tmp_path)
    with (tmp_path / "policy.csv").open("a") as handle:
        handle.write("g, newcomer, auditor, consumer-tax\n")
    assert policy_hash(tmp_path) != first
    loaded = PolicySet.load(tmp_path)
    assert loaded.decide("newcomer", "consumer-tax", "audit", "read").allowed


def test_missing_policy_file_is_refused(tmp_path):
    (tmp_path / "model.conf").write_text("")
    with pytest.raises(PolicyError, match=r"policy\.csv"):
        PolicySet.load(tmp_path)
