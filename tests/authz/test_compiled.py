"""The compiled policy against pycasbin's Enforcer: the same answer and the same rule for every
request, on policies generated in the project's model (wildcard domains and objects, roles
bound in several domains and to other roles, admin in `*`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import casbin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.authz.compiled import key_match
from governance.authz.policy import MODEL_FILE, PolicySet
from governance.config import DEFAULT_POLICY_DIR

DOMAINS = ["consumer-tax", "smb-accounting", "system", "payroll"]
OBJECTS = ["dataset", "scan", "policy", "model/tax-assistant", "model/ledger", "model/tax"]
ACTIONS = ["read", "create", "query", "decide"]
ROLES = ["admin", "steward", "reviewer", "engineer", "consumer"]
PRINCIPALS = ["alice", "bob", "carol", "dave"]

rule = st.tuples(
    st.sampled_from(ROLES + PRINCIPALS[:1]),
    st.sampled_from([*DOMAINS, "*", "con*", "s*"]),
    st.sampled_from([*OBJECTS, "*", "model/*", "model/tax*"]),
    st.sampled_from([*ACTIONS, "*"]),
)
binding = st.tuples(
    st.sampled_from(PRINCIPALS + ROLES),
    st.sampled_from(ROLES),
    st.sampled_from([*DOMAINS, "*", "con*"]),
)
request = st.tuples(
    st.sampled_from(PRINCIPALS + ROLES[:1]),
    st.sampled_from(DOMAINS),
    st.sampled_from(OBJECTS),
    st.sampled_from(ACTIONS),
)


def casbin_enforcer(directory: Path) -> casbin.Enforcer:
    enforcer = casbin.Enforcer(str(directory / MODEL_FILE), str(directory / "policy.csv"))
    enforcer.add_named_domain_matching_func("g", key_match)
    enforcer.build_role_links()
    return enforcer


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    rules=st.lists(rule, max_size=14),
    bindings=st.lists(binding, max_size=10),
    requests=st.lists(request, min_size=1, max_size=25),
)
def test_compiled_decisions_agree_with_casbin(rules, bindings, requests):
    bindings = [("alice", "admin", "*"), *bindings]
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        shutil.copy(Path(DEFAULT_POLICY_DIR) / MODEL_FILE, directory / MODEL_FILE)
        lines = [", ".join(["p", *r]) for r in rules] + [", ".join(["g", *b]) for b in bindings]
        (directory / "policy.csv").write_text("\n".join(lines) + "\n")
        compiled = PolicySet.load(directory)
        enforcer = casbin_enforcer(directory)
        for subject, domain, obj, action in requests:
            allowed, explain = enforcer.enforce_ex(subject, domain, obj, action)
            ours = compiled.decide(subject, domain, obj, action)
            assert ours.allowed == bool(allowed), (subject, domain, obj, action, lines)
            if allowed:
                assert list(ours.rule) == list(explain), (subject, domain, obj, action, lines)


def test_the_example_policy_agrees_with_casbin_on_every_question():
    policy = PolicySet.load(DEFAULT_POLICY_DIR)
    enforcer = policy.enforcer
    subjects = [*sorted({g[0] for g in policy.groupings}), "nobody"]
    for subject in subjects:
        for domain in DOMAINS:
            for obj in [*OBJECTS, "principal", "approval", "model/other"]:
                for action in [*ACTIONS, "delete", "upload", "reload"]:
                    allowed, explain = enforcer.enforce_ex(subject, domain, obj, action)
                    ours = policy.decide(subject, domain, obj, action)
                    assert ours.allowed == bool(allowed), (subject, domain, obj, action)
                    assert (list(ours.rule) if ours.rule else []) == list(explain or [])


def test_who_can_is_the_reverse_of_decide():
    policy = PolicySet.load(DEFAULT_POLICY_DIR)
    subjects = sorted({g[0] for g in policy.groupings})
    for domain in DOMAINS:
        for obj in OBJECTS:
            for action in ACTIONS:
                expected = {s for s in subjects if policy.decide(s, domain, obj, action).allowed}
                assert set(policy.compiled.who_can(domain, obj, action)) & set(subjects) == (
                    expected
                )


def test_a_model_conf_with_another_matcher_is_refused(tmp_path):
    shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "p")
    model = tmp_path / "p" / MODEL_FILE
    model.write_text(model.read_text().replace("keyMatch(r.obj, p.obj)", "r.obj == p.obj"))
    try:
        PolicySet.load(tmp_path / "p")
    except Exception as exc:
        assert "matcher" in str(exc)
    else:
        raise AssertionError("a different model was accepted")


def brute_force(policy, universe):
    """Every question asked: the definition effective_permissions must match."""
    from governance.authz.catalog import ACTIONS as CATALOG
    from governance.authz.catalog import object_type

    allowed = {}
    for principal in universe.principals:
        for domain in universe.domains:
            for obj in universe.objects:
                for action in CATALOG[object_type(obj)]:
                    decision = policy.decide(principal, domain, obj, action)
                    if decision.allowed:
                        allowed[(principal, domain, obj, action)] = decision.rule or ()
    return allowed


def test_effective_permissions_from_the_rules_outward_equal_asking_everything(tmp_path):
    from benchmarks.policy_generator import generate
    from governance.policy_review.diff import Universe, effective_permissions

    for directory in (Path(DEFAULT_POLICY_DIR), tmp_path / "generated"):
        if directory.name == "generated":
            generate(directory, Path(DEFAULT_POLICY_DIR), domains=3, people=40, families=4)
        policy = PolicySet.load(directory)
        universe = Universe.of(directory)
        assert Universe.of_policy(policy) == universe
        assert effective_permissions(policy, universe) == brute_force(policy, universe)
