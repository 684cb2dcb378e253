# ruff: noqa: F811 (pytest fixtures imported from tests/pipeline.py)
"""Differential privacy in the service: the recipe, the customer as the unit (a keyed hash in
the bundle), the domain's ledger and budget, refusals with the numbers, and the gate's
membership-inference threshold."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import yaml

from governance.config import DEFAULT_POLICY_DIR
from governance.db import get_db
from governance.flows.evaluation import membership_reasons
from governance.jobs.models import Job
from tests.console.conftest import sign_in
from tests.families.test_memorization import bundle_files
from tests.pipeline import (  # noqa: F401 (fixtures)
    app,
    approve,
    call,
    request_data_use,
    scanned_dataset,
    scanner,
    world,
)

PRIVATE = "tax-private"


@pytest.fixture
def config(config, tmp_path):
    """The shipped policy with a privacy budget for consumer-tax, and a customer key in its
    PII rules."""
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    path = policies / "domains.yaml"
    document = yaml.safe_load(path.read_text())
    document["domains"]["consumer-tax"]["privacy"] = {
        "budget": {"epsilon": 5.0, "delta": 1e-5, "years": 5},
        "max_membership_auc": 0.9,
    }
    path.write_text(yaml.safe_dump(document))
    rules = policies / "pii.yaml"
    document = yaml.safe_load(rules.read_text())
    document["domains"]["consumer-tax"]["unit_key"] = "customer_id"
    rules.write_text(yaml.safe_dump(document))
    return {**config, "GOVERNANCE_POLICY_DIR": str(policies)}


def customers_dataset(client, world):
    records = [
        {
            "prompt": f"How do I report box {i} of my W-2?",
            "completion": f"Box {i} goes on line 1a.",
            "metadata": {"customer_id": f"CUST-{i % 3:04d}"},
        }
        for i in range(1, 19)
    ]
    return scanned_dataset(client, world, "casey", "consumer-tax", "by-customer", records)[0]


def start(client, world, dataset_id):
    return call(
        client,
        "morgan",
        world,
        "POST",
        f"/api/v1/models/{PRIVATE}/versions",
        json={"tax_year": 2025, "datasets": [{"dataset_id": dataset_id, "version": 1}]},
    )


def test_a_dp_family_trains_per_customer_within_the_domains_budget(app, client, world):
    status, family = call(
        client,
        "morgan",
        world,
        "POST",
        "/api/v1/domains/consumer-tax/models",
        json={
            "name": PRIVATE,
            "base_model": "tiny-llama",
            "privacy": {"epsilon": 3.0, "delta": 1e-6, "max_grad_norm": 0.5},
            # 18 records: 30% held out gives the gate the 5 it needs.
            "eval_suite": {"holdout_fraction": 0.3},
        },
    )
    assert status == 201, family
    assert family["privacy"] == {
        "epsilon": 3.0,
        "delta": 1e-6,
        "max_grad_norm": 0.5,
        "sampling": "poisson",
        "compare": False,
    }
    dataset = customers_dataset(client, world)
    uid = request_data_use(client, world, dataset=dataset, family=PRIVATE)
    # The reviewers of the data see what the version may spend of the domain's budget.
    _, detail = call(client, "priya", world, "GET", f"/api/v1/approvals/{uid}")
    assert detail["summary"]["privacy_plan"]["epsilon"] == 3.0
    assert detail["summary"]["privacy_plan"]["remaining"]["epsilon"] == 5.0
    approve(client, world, uid, ("priya", "lee"), "receipt reviewed")
    status, version = start(client, world, dataset)
    assert status == 201, version

    with get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == "train")).scalar_one()
    files = bundle_files(app, job)
    spec = json.loads(files["spec.json"])
    assert spec["privacy"] == {
        "epsilon": 3.0,
        "delta": 1e-6,
        "max_grad_norm": 0.5,
        "sampling": "poisson",
        "compare": False,
    }
    records = [json.loads(line) for line in files["train.jsonl"].splitlines()]
    keyed = [r for r in records if "unit" in r]
    assert keyed and all(re.fullmatch(r"[0-9a-f]{32}", r["unit"]) for r in keyed)
    assert len({r["unit"] for r in keyed}) <= 3  # three customers
    # The worker never sees the customer key itself, nor any record's metadata.
    bundle = json.dumps(files)
    assert "CUST-" not in bundle and "metadata" not in files["train.jsonl"]

    # The ledger reserves the version's target while it trains; the budget holds.
    status, book = call(
        client, "priya", world, "GET", "/api/v1/domains/consumer-tax/privacy-ledger"
    )
    assert status == 200, book
    assert book["unit"] == "customer" and book["unit_key"] == "customer_id"
    assert book["spent"] == {"epsilon": 3.0, "delta": 1e-6}
    assert book["remaining"]["epsilon"] == 2.0
    reserved = [e for e in book["entries"] if e["family"] == PRIVATE]
    assert reserved[0]["counts"] and "reserved" in reserved[0]["why"]
    status, refused = start(client, world, dataset)
    assert status == 409, refused
    error = refused["error"]
    assert error["code"] == "privacy_budget_exceeded"
    assert error["details"]["remaining"]["epsilon"] == pytest.approx(2.0)
    assert "at most 2" in error["message"]
    # The yearly refresh plans from what is left: epsilon 2 fits, 2.5 does not.
    from governance.domains.models import Domain
    from governance.errors import Conflict
    from governance.families import privacy
    from governance.families.models import ModelFamily

    policy_dir = app.config["GOVERNANCE_POLICY_DIR"]
    with get_db(app).unit_of_work() as session:
        private_family = session.exec(
            sa.select(ModelFamily).where(ModelFamily.name == PRIVATE)
        ).scalar_one()
        domain = session.get(Domain, private_family.domain_id)
        planned = privacy.plan(session, private_family, domain, policy_dir)
        assert planned["epsilon"] == 2.0 and planned["recipe_epsilon"] == 3.0 and planned["fits"]
        allowed = privacy.check_training(session, private_family, domain, policy_dir, 2.0)
        assert allowed["epsilon"] == 2.0
        with pytest.raises(Conflict):
            privacy.check_training(session, private_family, domain, policy_dir, 2.5)

    # Another domain's reviewer cannot read this domain's ledger.
    status, _ = call(client, "sam", world, "GET", "/api/v1/domains/consumer-tax/privacy-ledger")
    assert status == 403

    # Reviewers see it in the console: the domain's budget, and a version's guarantee.
    from governance.families.models import ModelVersion

    with get_db(app).unit_of_work() as session:
        trained = session.exec(sa.select(ModelVersion)).scalars().one()
        trained.metrics = {
            "privacy": {"epsilon": 2.987, "delta": 1e-6, "unit": "customer", "units": 3,
                        "steps": 12, "noise_multiplier": 1.1, "max_grad_norm": 0.5,
                        "accountant": "rdp (opacus)"},
            "membership_inference": {"members": 18, "non_members": 4,
                                     "loss_attack": {"auc": 0.55, "tpr_at_1pct_fpr": 0.0}},
        }  # fmt: skip
        session.add(trained)
        session.commit()
    browser = app.test_client()
    sign_in(browser, world["priya"], "/console/")
    page = browser.get("/console/domains/consumer-tax/datasets")
    assert page.status_code == 200 and "Privacy budget" in page.text
    assert "<strong>2.987</strong> of 5.0" in page.text
    version_page = browser.get(f"/console/models/{PRIVATE}/versions/1")
    assert version_page.status_code == 200
    assert "epsilon 2.987 spent at delta 1e-06 per customer" in version_page.text
    assert "membership inference, loss attack: AUC 0.55" in version_page.text

    # Tainted and its adapter destroyed: it stops counting; merely tainted, it still counts.
    with get_db(app).unit_of_work() as session:
        trained = session.exec(sa.select(ModelVersion)).scalars().one()
        trained.status, trained.adapter_key = "tainted", "models/x.tar"
        session.add(trained)
        session.commit()
    _, book = call(client, "priya", world, "GET", "/api/v1/domains/consumer-tax/privacy-ledger")
    assert book["spent"]["epsilon"] == 2.987
    with get_db(app).unit_of_work() as session:
        trained = session.exec(sa.select(ModelVersion)).scalars().one()
        trained.adapter_key = None
        session.add(trained)
        session.commit()
    _, book = call(client, "priya", world, "GET", "/api/v1/domains/consumer-tax/privacy-ledger")
    assert book["spent"]["epsilon"] == 0 and not book["entries"][0]["counts"]


def test_a_domain_that_requires_dp_refuses_a_family_without_it(app, client, world):
    path = Path(app.config["GOVERNANCE_POLICY_DIR"]) / "domains.yaml"
    document = yaml.safe_load(path.read_text())
    document["domains"]["consumer-tax"]["privacy"]["required"] = True
    path.write_text(yaml.safe_dump(document))
    from tests.pipeline import FAMILY, approve_data, train

    approve_data(client, world)
    status, refused = train(client, world)
    assert status == 422 and "requires differential privacy" in refused["error"]["message"]
    assert FAMILY in refused["error"]["message"]


def test_the_gate_refuses_a_version_whose_records_can_be_told_apart():
    def version(auc_value):
        return SimpleNamespace(
            metrics={
                "membership_inference": {
                    "loss_attack": {"auc": auc_value, "tpr_at_1pct_fpr": 0.1},
                    "reference_attack": {"auc": 0.5, "tpr_at_1pct_fpr": 0.0},
                }
            }
        )

    assert membership_reasons(version(0.95), 0.9) and not membership_reasons(version(0.6), 0.9)
    assert membership_reasons(version(0.95), None) == []
    assert membership_reasons(SimpleNamespace(metrics={}), 0.9)  # measured nothing
