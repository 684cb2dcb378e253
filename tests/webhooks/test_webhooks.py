"""Lifecycle webhooks: events from committed audit entries, signed so that a receiver using
the Standard Webhooks reference library accepts them, retried with backoff, logged, and
redelivered by an operator. The receiver is a real HTTP server in its own process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from sqlmodel import select

from governance.app import create_app
from governance.audit.models import AuditEntry
from governance.audit.service import Actor, record
from governance.db import Database
from governance.policy_review.lint import lint
from governance.webhooks import service
from governance.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.factories import auth, close_app, make_domain, principal_token
from tests.webhooks.support import SUBSCRIBER, Clock, Receiver, subscribe

ACTOR = Actor("morgan", "req-1", "f" * 64)


@pytest.fixture
def receivers(tmp_path):
    started: list[Receiver] = []

    def start(secret: str, *args: str) -> Receiver:
        started.append(Receiver(tmp_path, secret, *args))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def db(config):
    database = Database(config["GOVERNANCE_DATABASE_URL"])
    yield database
    database.dispose()


def sender_for(config, policies: Path, clock: Clock, **environ: str) -> service.Sender:
    settings = {
        **config,
        "GOVERNANCE_POLICY_DIR": str(policies),
        "WEBHOOK_RETRY_BASE_SECONDS": 0.5,
    }
    return service.Sender(settings, clock=clock, environ=environ)


def log_entries(db: Database) -> dict[str, int]:
    """Audit entries of several kinds; only one is a consumer-tax lifecycle event."""
    seqs = {}
    with db.unit_of_work() as session:
        for key, action, domain, decision in (
            ("created", "model.train", "consumer-tax", "ok"),
            ("query", "model.query", "consumer-tax", "allow"),
            ("other-domain", "model.promote", "smb-accounting", "ok"),
            ("refused", "dataset.delete", "consumer-tax", "deny"),
        ):
            seqs[key] = record(
                session, ACTOR, action, "model/tax-assistant", domain,
                decision=decision, details={"version": 1},
            )  # fmt: skip
        session.commit()
    return seqs


def test_deliveries_are_signed_retried_until_accepted_and_logged(config, db, tmp_path, receivers):
    secret = service.create_secret(config["GOVERNANCE_HOME"], SUBSCRIBER)
    assert (
        os.stat(service.secret_path(config["GOVERNANCE_HOME"], SUBSCRIBER)).st_mode & 0o777 == 0o600
    )
    receiver = receivers(secret, "--fail", "2")
    clock = Clock()
    sender = sender_for(config, subscribe(tmp_path, receiver.url), clock)
    seqs = log_entries(db)

    assert service.pump(db, sender) == {"queued": 1, "delivered": 0, "retrying": 1, "failed": 0}
    # Not due yet: the backoff holds it back.
    assert service.pump(db, sender)["retrying"] == 0
    clock.advance(60)
    assert service.pump(db, sender)["retrying"] == 1
    clock.advance(60)
    assert service.pump(db, sender) == {"queued": 0, "delivered": 1, "retrying": 0, "failed": 0}
    clock.advance(3600)
    assert service.pump(db, sender) == {"queued": 0, "delivered": 0, "retrying": 0, "failed": 0}

    got = receiver.received()
    assert [(r["verified"], r["status"]) for r in got] == [(True, 500), (True, 500), (True, 204)]
    assert len({r["id"] for r in got}) == 1  # one id on every retry: the receiver deduplicates
    event = got[-1]["event"]
    assert event["type"] == "model.version.created"
    assert event["data"]["audit"]["seq"] == seqs["created"]
    assert event["data"]["domain"] == "consumer-tax" and event["data"]["principal"] == "morgan"
    with db.unit_of_work() as session:
        delivery = session.exec(select(WebhookDelivery)).one()
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 3, 204)
        log = session.exec(select(WebhookAttempt).order_by(WebhookAttempt.number)).all()
        assert [(a.number, a.status_code) for a in log] == [(1, 500), (2, 500), (3, 204)]
        entry_hash = session.get(AuditEntry, seqs["created"]).leaf_hash
    assert event["data"]["audit"]["leaf_hash"] == entry_hash
    sender.close()


def test_retry_after_is_honoured(config, db, tmp_path, receivers):
    secret = service.create_secret(config["GOVERNANCE_HOME"], SUBSCRIBER)
    receiver = receivers(secret, "--fail", "1", "--retry-after", "7")
    clock = Clock()
    sender = sender_for(config, subscribe(tmp_path, receiver.url), clock)
    log_entries(db)
    assert service.pump(db, sender)["retrying"] == 1
    with db.unit_of_work() as session:
        delivery = session.exec(select(WebhookDelivery)).one()
        attempt = session.exec(select(WebhookAttempt)).one()
        assert attempt.status_code == 429
        assert (delivery.next_attempt_at - attempt.at).total_seconds() == pytest.approx(7)
    clock.advance(6)
    assert service.pump(db, sender)["delivered"] == 0
    clock.advance(2)
    assert service.pump(db, sender)["delivered"] == 1
    sender.close()


def test_a_receiver_that_cannot_verify_accepts_nothing_and_an_operator_redelivers(
    config, db, tmp_path, receivers
):
    service.create_secret(config["GOVERNANCE_HOME"], SUBSCRIBER)  # not the receiver's
    receiver_secret = service.create_secret(tmp_path, "elsewhere")
    receiver = receivers(receiver_secret)
    clock = Clock()
    policies = subscribe(tmp_path, receiver.url, max_attempts=2)
    sender = sender_for(config, policies, clock)
    log_entries(db)
    service.pump(db, sender)
    clock.advance(60)
    assert service.pump(db, sender)["failed"] == 1
    assert [(r["verified"], r["status"]) for r in receiver.received()] == [(False, 401)] * 2

    app = create_app({**config, "TESTING": True, "GOVERNANCE_POLICY_DIR": str(policies)})
    try:
        client = app.test_client()
        make_domain(app, "consumer-tax")
        admin, audrey, taxbot = (principal_token(app, n) for n in ("admin", "audrey", "taxbot"))
        listed = client.get("/api/v1/webhooks/deliveries?state=failed", headers=auth(audrey))
        assert listed.status_code == 200, listed.get_json()
        [failed] = listed.get_json()["items"]
        assert (failed["last_status"], failed["attempts"]) == (401, 2)
        assert client.get("/api/v1/webhooks/deliveries", headers=auth(taxbot)).status_code == 403
        path = f"/api/v1/webhooks/deliveries/{failed['uid']}/redeliver"
        assert client.post(path, headers=auth(audrey)).status_code == 403
        # Who may not read webhooks cannot tell an existing delivery from a missing one.
        hidden = client.get(f"/api/v1/webhooks/deliveries/{failed['uid']}", headers=auth(taxbot))
        missing = client.get(f"/api/v1/webhooks/deliveries/msg_{'0' * 32}", headers=auth(taxbot))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.get_json()["error"]["message"].replace(
            failed["uid"], "X"
        ) == missing.get_json()["error"]["message"].replace(f"msg_{'0' * 32}", "X")
        assert client.post(path, headers=auth(taxbot)).status_code == 404
        again = client.post(path, headers=auth(admin))
        assert again.status_code == 200 and again.get_json()["state"] == "pending"
        assert client.post(path, headers=auth(admin)).status_code == 409
        entries = client.get(
            "/api/v1/audit/entries?action=webhook.redeliver", headers=auth(admin)
        ).get_json()["items"]
        assert [e["object"] for e in entries] == [f"webhook/{failed['uid']}"]

        # With the receiver's secret configured (the environment wins over the file).
        fixed = sender_for(
            config, policies, clock, **{service.env_name(SUBSCRIBER): receiver_secret}
        )
        assert service.pump(db, fixed)["delivered"] == 1
        one = client.get(f"/api/v1/webhooks/deliveries/{failed['uid']}", headers=auth(audrey))
        body = one.get_json()
        assert body["state"] == "delivered"
        assert [(a["number"], a["status_code"]) for a in body["log"]] == [
            (1, 401), (2, 401), (3, 204)
        ]  # fmt: skip
        assert (
            client.get("/api/v1/webhooks/deliveries/msg_nope", headers=auth(admin)).status_code
            == 422
        )
        fixed.close()
    finally:
        close_app(app)
    sender.close()


def test_two_senders_never_hold_one_delivery_at_once(config, db, tmp_path, receivers):
    secret = service.create_secret(config["GOVERNANCE_HOME"], SUBSCRIBER)
    receiver = receivers(secret)
    clock = Clock()
    policies = subscribe(tmp_path, receiver.url)
    first, second = sender_for(config, policies, clock), sender_for(config, policies, clock)
    log_entries(db)
    with db.unit_of_work() as session:
        assert service.enqueue(session, policies) == 1
        assert service.enqueue(session, policies) == 0  # the cursor moved with the queue
    with db.unit_of_work() as one, db.unit_of_work() as other:
        [held] = first.claim(one)
        assert second.claim(other) == []
        assert first.attempt(one, held, service.subscribers(policies).get(SUBSCRIBER)) == (
            "delivered"
        )
    assert len(receiver.received()) == 1
    first.close()
    second.close()


def test_secrets_are_read_safely(tmp_path):
    with pytest.raises(service.SecretError, match="GOVERNANCE_WEBHOOK_SECRET_LEGAL_HOOKS"):
        service.read_secret(tmp_path, SUBSCRIBER, {})
    value = service.create_secret(tmp_path, SUBSCRIBER)
    assert len(service.read_secret(tmp_path, SUBSCRIBER, {})) == 32
    with pytest.raises(Exception, match="rotate"):
        service.create_secret(tmp_path, SUBSCRIBER)
    assert service.create_secret(tmp_path, SUBSCRIBER, rotate=True) != value
    os.chmod(service.secret_path(tmp_path, SUBSCRIBER), 0o644)
    with pytest.raises(service.SecretError, match="chmod 600"):
        service.read_secret(tmp_path, SUBSCRIBER, {})
    with pytest.raises(service.SecretError, match="whsec_"):
        service.read_secret(tmp_path, SUBSCRIBER, {service.env_name(SUBSCRIBER): "whsec_%%%"})


@pytest.mark.parametrize(
    ("subscriber", "problem"),
    [
        ({"url": "http://legal.example.com/hooks"}, "must be https"),
        ({"url": "https://user:pw@legal.example.com/hooks"}, "credentials"),
        ({"events": ["model.version.exploded"]}, "unknown events"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"name": "Legal Hooks"}, "name"),
    ],
)
def test_lint_refuses_a_bad_subscriber(tmp_path, subscriber, problem):
    good = {"name": SUBSCRIBER, "url": "https://legal.example.com/hooks", "events": ["*"]}
    assert not [p for p in lint(subscribe(tmp_path, good["url"])) if p.file == "domains.yaml"]
    policies = subscribe(tmp_path, good["url"])
    document = yaml.safe_load((policies / "domains.yaml").read_text())
    document["domains"]["consumer-tax"]["webhooks"] = [{**good, **subscriber}]
    (policies / "domains.yaml").write_text(yaml.safe_dump(document))
    problems = [p for p in lint(policies) if p.file == "domains.yaml"]
    assert len(problems) == 1 and problem in problems[0].message, problems


def test_the_console_shows_the_delivery_log_and_an_admin_redelivers(
    config, db, tmp_path, receivers
):
    from tests.console.conftest import csrf_of, sign_in

    service.create_secret(config["GOVERNANCE_HOME"], SUBSCRIBER)
    receiver = receivers(service.create_secret(tmp_path, "elsewhere"))
    clock = Clock()
    policies = subscribe(tmp_path, receiver.url, max_attempts=1)
    sender = sender_for(config, policies, clock)
    log_entries(db)
    assert service.pump(db, sender)["failed"] == 1
    sender.close()
    app = create_app({**config, "TESTING": True, "GOVERNANCE_POLICY_DIR": str(policies)})
    try:
        client = app.test_client()
        make_domain(app, "consumer-tax")
        sign_in(client, principal_token(app, "audrey"))
        page = client.get("/console/webhooks?state=failed")
        assert page.status_code == 200 and page.text.count('data-testid="delivery"') == 1
        assert "answered 401" in page.text and "Redeliver</button>" not in page.text
        assert client.get("/console/webhooks?state=lost").status_code == 422
        sign_in(client, principal_token(app, "taxbot"))
        assert client.get("/console/webhooks").status_code == 403
        sign_in(client, principal_token(app, "admin"))
        page = client.get("/console/webhooks")
        assert "Redeliver</button>" in page.text
        with db.unit_of_work() as session:
            uid = session.exec(select(WebhookDelivery.uid)).one()
        done = client.post(
            f"/console/webhooks/{uid}/redeliver", data={"csrf_token": csrf_of(page.text)}
        )
        assert done.status_code == 302
        with db.unit_of_work() as session:
            assert session.exec(select(WebhookDelivery.state)).one() == "pending"
    finally:
        close_app(app)
