"""The app factory and the blueprint registry: the only importers of view modules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import current_app, jsonify, redirect, request
from flask_openapi3 import Info, OpenAPI
from werkzeug.routing import BaseConverter, IntegerConverter

from governance import __version__, runtime
from governance.config import load_config
from governance.console import registry as console_registry
from governance.db import INT_MAX
from governance.errors import NotFound, register_error_handlers, validation_error_response
from governance.gateway import telemetry
from governance.web import accounts as accounts_views
from governance.web import approvals as approvals_views
from governance.web import audit as audit_views
from governance.web import authzen, health, transaction
from governance.web import datasets as datasets_views
from governance.web import domains as domains_views
from governance.web import families as families_views
from governance.web import gateway as gateway_views
from governance.web import hooks as api
from governance.web import jobs as jobs_views
from governance.web import policy as authz_views
from governance.web import training as training_views
from governance.web import webhooks as webhooks_views
from governance.web.common import SECURITY_SCHEMES

API_BLUEPRINTS = (
    health.bp,
    accounts_views.bp,
    domains_views.bp,
    datasets_views.bp,
    authz_views.bp,
    authzen.bp,
    authzen.discovery_bp,
    audit_views.bp,
    approvals_views.bp,
    families_views.bp,
    training_views.bp,
    jobs_views.bp,
    webhooks_views.bp,
    gateway_views.legacy_bp,
    gateway_views.bp,
    gateway_views.telemetry_bp,
)


def register_blueprints(app: OpenAPI) -> None:
    """The blueprint registry: every API blueprint, then the console."""
    for blueprint in API_BLUEPRINTS:
        app.register_api(blueprint)
    console_registry.init_app(app)


def index():
    """Where to go: a browser to the console, a program to the API's description."""
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect("/console/")
    return jsonify(
        {
            "service": "governance",
            "console": "/console/",
            "openapi": "/openapi.json",
            "docs": "/docs/swagger",
            "api": "/api/v1",
            "authzen": "/access/v1",
            "health": "/api/v1/health",
        }
    )


def at_most(limit: int) -> str:
    """A regular expression for the decimal integers from 0 to `limit` (leading zeros allowed
    up to the limit's length): every shorter number, then, digit by digit, those as long as
    the limit that stay below it."""
    digits = str(limit)
    branches = [rf"\d{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for index, digit in enumerate(digits):
        rest = len(digits) - index - 1
        if digit != "0":
            tail = rf"\d{{{rest}}}" if rest else ""
            branches.append(f"{digits[:index]}[0-{int(digit) - 1}]{tail}")
    branches.append(digits)
    return "(?:" + "|".join(branches) + ")"


INT_PATTERN = at_most(INT_MAX)


class UidConverter(BaseConverter):
    regex = "[0-9a-f]{32}"


def openlineage_schema(name: str):
    """The JSON Schema of a custom OpenLineage facet the events name (public, like
    /openapi.json): a consumer resolves each event's `_schemaURL` here."""
    from governance.audit.openlineage import SCHEMA_DIR

    files = {p.stem: p for p in SCHEMA_DIR.glob("*.json")}
    if name not in files:
        raise NotFound(f"no schema {name}", details={"name": name})
    return current_app.response_class(files[name].read_bytes(), mimetype="application/json")


class GovernanceApp(OpenAPI):
    """The Flask app, with each request one unit of work (`governance.web.transaction`)."""

    def dispatch_request(self):
        answer = self.make_response(super().dispatch_request())
        if answer.status_code < 400:
            api.require_decision()
        transaction.commit_request()
        return answer

    def handle_user_exception(self, e):
        transaction.rollback_request()
        return super().handle_user_exception(e)

    def handle_exception(self, e):
        transaction.rollback_request()
        return super().handle_exception(e)


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    runtime_overrides: Mapping[str, Any] | None = None,
) -> OpenAPI:
    """Create and configure an instance of the Flask application.

    Settings come from the defaults, then the environment (GOVERNANCE_HOME,
    GOVERNANCE_DATABASE_URL, ...), then `config`. Nothing connects until a request needs it.
    """

    class BoundedIntConverter(IntegerConverter):
        # The pattern itself stops at INT_MAX, so a larger id matches no route (404) and never
        # reaches a 32-bit column. (A `max` check after the match would make werkzeug answer
        # 405 whenever another method's rule shares the path.)
        regex = INT_PATTERN

    # Everything the service writes (database journals, blobs, exports) is owner-only.
    os.umask(0o077)
    settings = load_config(config)
    app = GovernanceApp(
        __name__,
        info=Info(
            title="governance",
            version=__version__,
            description="Model governance and data segregation for fine-tuned LLMs",
        ),
        security_schemes=SECURITY_SCHEMES,
        # Swagger UI at /docs/swagger, from assets in the installed package (offline); the
        # description itself is also at /openapi.json. Neither needs credentials.
        doc_ui=True,
        doc_prefix="/docs",
        validation_error_status=422,
        validation_error_callback=validation_error_response,
    )
    app.config.update(settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # `<int:...>` in routes stops at INT_MAX: a larger id matches no route (404).
    app.url_map.converters["int"] = BoundedIntConverter
    # `<uid:...>` is a 32-hex-digit uid, so `/jobs/claim` is never read as the job "claim"
    # (a GET there is a 405 whose `Allow` names POST only).
    app.url_map.converters["uid"] = UidConverter

    register_error_handlers(app)
    telemetry.instrument(app)
    runtime.init_app(app, runtime.build(settings, **dict(runtime_overrides or {})))
    api.init_app(app)
    register_blueprints(app)
    app.add_url_rule("/openapi.json", "openapi_json", lambda: jsonify(app.api_doc))
    app.add_url_rule("/openlineage/spec/<name>.json", "openlineage_schema", openlineage_schema)
    app.add_url_rule("/", "index", index)
    return app
