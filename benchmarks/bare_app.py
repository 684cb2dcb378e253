"""The reference for the request benchmark: a bare Flask app that answers the same GET with
the same database read and the same JSON, and does nothing else (no authentication, no
policy, no audit). `gunicorn 'benchmarks.bare_app:create_app()'`."""

from __future__ import annotations

import os

from flask import Flask, abort
from sqlmodel import select

from governance.config import normalize_database_url
from governance.db import Database
from governance.domains.models import Domain


def create_app() -> Flask:
    app = Flask("bare")
    db = Database(normalize_database_url(os.environ["GOVERNANCE_DATABASE_URL"]))

    @app.get("/api/v1/domains/<name>")
    def get_domain(name: str):
        with db.unit_of_work() as session:
            domain = session.exec(select(Domain).where(Domain.name == name)).first()
            if domain is None:
                abort(404)
            return domain.model_dump(mode="json")

    return app
