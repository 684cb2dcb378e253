"""The approvals service without HTTP: promotion requests and the trainer's exclusion."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.approvals import service, subjects
from governance.approvals.rules import ApprovalRulesError, load_approval_rules
from governance.audit.service import Actor
from governance.authz.policy import PolicySet
from governance.config import DEFAULT_POLICY_DIR
from governance.crypto import load_signing_key
from governance.db import Database
from governance.errors import Forbidden
from tests.factories import make_domain

DIGEST = "ab" * 32


def test_a_promotion_needs_legal_and_an_engineer_who_did_not_train(app, config, monkeypatch):
    # Model versions arrive with the training issue; here the subject is a fixed lineage digest.
    monkeypatch.setitem(subjects._RESOLVERS, subjects.MODEL_PROMOTION, lambda *_: DIGEST)
    domain = make_domain(app, "consumer-tax")
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    policy = PolicySet.load(DEFAULT_POLICY_DIR)
    key = load_signing_key(config["GOVERNANCE_HOME"])
    rules = load_approval_rules(DEFAULT_POLICY_DIR)

    def act(who):
        return Actor(who, None, policy.hash)

    def decide(uid, who):
        return service.decide(
            session,
            uid,
            "approve",
            "eval is fine",
            None,
            policy=policy,
            policy_dir=Path(DEFAULT_POLICY_DIR),
            key=key,
            actor=act(who),
        )

    with db.unit_of_work() as session:
        request = service.open_request(
            session,
            domain,
            service.MODEL_PROMOTION,
            "model-version/tax-assistant/2",
            DIGEST,
            "tax-assistant",
            {"version": 2},
            rules,
            actor=act("scheduler"),
            also_excluded=("morgan",),
        )
        assert request.required_roles == ["legal-reviewer", "ml-engineer"]
        assert request.excluded == ["morgan", "scheduler"]
        with pytest.raises(Forbidden, match="trained the subject"):
            decide(request.uid, "morgan")
        assert decide(request.uid, "jordan").role == "ml-engineer"
        assert decide(request.uid, "lee").role == "legal-reviewer"
        session.refresh(request)
        assert request.state == "approved"
        assert (
            service.approved_request(
                session,
                service.MODEL_PROMOTION,
                request.subject,
                "tax-assistant",
                Path(DEFAULT_POLICY_DIR),
                act("system"),
            ).uid
            == request.uid
        )
    db.dispose()


def test_approval_rules_refuse_what_would_weaken_them(tmp_path):
    (tmp_path / "approvals.yaml").write_text(
        "default:\n  dataset-use:\n    required: [privacy-reviewer]\n    exclude: [trainer]\n"
    )
    with pytest.raises(ApprovalRulesError, match="exclude must contain requester"):
        load_approval_rules(tmp_path)
    (tmp_path / "approvals.yaml").write_text("default:\n  dataset-usage: {}\n")
    with pytest.raises(ApprovalRulesError, match="unknown kind"):
        load_approval_rules(tmp_path)


def test_auto_approve_lists_families_that_need_no_reviewer(app, config, tmp_path):
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    text = (policies / "approvals.yaml").read_text()
    (policies / "approvals.yaml").write_text(
        text.replace(
            "    exclude: [requester, trainer]\n    expires_days: 14\n",
            "    exclude: [requester, trainer]\n    expires_days: 14\n"
            "    auto_approve: [tax-assistant]\n",
        )
    )
    rules = load_approval_rules(policies)
    domain = make_domain(app, "consumer-tax")
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    with db.unit_of_work() as session:
        auto = service.open_request(
            session,
            domain,
            service.MODEL_PROMOTION,
            "model-version/tax-assistant/3",
            DIGEST,
            "tax-assistant",
            {},
            rules,
            actor=Actor("system:refresh"),
        )
        other = service.open_request(
            session,
            domain,
            service.MODEL_PROMOTION,
            "model-version/books/1",
            DIGEST,
            "books",
            {},
            rules,
            actor=Actor("system:refresh"),
        )
        assert (auto.state, auto.required_roles) == ("approved", [])
        assert (other.state, other.required_roles) == ("pending", ["legal-reviewer", "ml-engineer"])
    db.dispose()
