"""A request is one unit of work: committed when its view returns, rolled back when anything
raises; the audit entries of its decisions are kept either way, and the log stays whole."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask_openapi3 import APIBlueprint

from governance import runtime
from governance.app import create_app
from governance.audit.models import AuditEntry
from governance.db import get_db, get_session
from governance.domains import service as domains
from governance.domains.models import Domain, DomainCreate
from governance.errors import Conflict
from governance.flows.log_export import verify_log
from governance.web.guard import check, current_actor, require
from tests.factories import auth, close_app, principal_token


def build(config):
    """An app with three test views that write a domain: one that then fails, one that
    succeeds, and one that never authorizes."""
    app = create_app({**config, "TESTING": True})
    views = APIBlueprint("uow", __name__, url_prefix="/api/v1/uow")

    def write(name: str) -> None:
        require("create", "domain", "system")
        domains.create_domain(
            get_session(),
            DomainCreate(name=name, jurisdiction="US", retention_days=30),
            actor=current_actor(),
        )
        # A decision after the write: it goes into the request's transaction (the log's
        # writer, on its own connection, would wait for the locks the request holds).
        check("read", "domain", "system", {"probe": name})

    @views.post("/fails")
    def fails():
        write("half-written")
        raise Conflict("something after the write went wrong")

    @views.post("/succeeds")
    def succeeds():
        write("whole")
        return {"ok": True}, 201

    @views.post("/careless")
    def careless():
        domains.create_domain(
            get_session(),
            DomainCreate(name="unauthorized", jurisdiction="US", retention_days=30),
            actor=current_actor(),
        )
        return {"ok": True}, 201

    app.register_api(views)
    return app


def entries(app) -> list[tuple[str, str, str]]:
    with get_db(app).engine.connect() as connection:
        rows = connection.execute(
            sa.select(AuditEntry.action, AuditEntry.object, AuditEntry.decision).order_by(
                AuditEntry.seq
            )
        ).all()
    return [tuple(row) for row in rows]


def domain_names(app) -> set[str]:
    with get_db(app).unit_of_work() as session:
        return set(session.execute(sa.select(Domain.name)).scalars())


def log_is_whole(app) -> None:
    with get_db(app).unit_of_work() as session:
        key = runtime.of(app).audit_log.signing_key.public_key()
        verify_log(session, key)


@pytest.fixture
def served(config):
    """The app with the test views, and an admin token."""
    app = build(config)
    yield app, principal_token(app, "admin")
    close_app(app)


def test_a_failed_request_writes_nothing_and_keeps_its_decisions(served):
    app, token = served
    before = len(entries(app))
    response = app.test_client().post("/api/v1/uow/fails", headers=auth(token))
    assert response.status_code == 409
    assert "half-written" not in domain_names(app)
    added = entries(app)[before:]
    # Both decisions are kept (the second re-appended after the rollback); the state
    # change is not, since it did not happen.
    assert ("create", "domain", "allow") in added
    assert ("read", "domain", "allow") in added
    assert not any(action == "domain.create" for action, _, _ in added)
    log_is_whole(app)


def test_a_request_that_succeeds_commits_its_writes_with_their_entries(served):
    app, token = served
    before = len(entries(app))
    response = app.test_client().post("/api/v1/uow/succeeds", headers=auth(token))
    assert response.status_code == 201, response.get_json()
    assert "whole" in domain_names(app)
    added = entries(app)[before:]
    actions = [action for action, _, _ in added]
    assert actions.index("create") < actions.index("domain.create") < actions.index("read")
    log_is_whole(app)


def test_a_view_that_writes_without_authorizing_answers_500_and_writes_nothing(served):
    app, token = served
    response = app.test_client().post("/api/v1/uow/careless", headers=auth(token))
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "unauthorized" not in domain_names(app)
    log_is_whole(app)
