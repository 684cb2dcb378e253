"""governance: the control plane of the model-governance service."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__version__ = "0.1.0"


def index():
    """Where to go: a browser to the console, a program to the API's description."""
    from flask import jsonify, redirect, request

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


def create_app(config: Mapping[str, Any] | None = None):
    """Create and configure an instance of the Flask application.

    Settings come from the defaults, then the environment (GOVERNANCE_HOME,
    GOVERNANCE_DATABASE_URL, ...), then `config`. Nothing connects until a request needs it.
    """
    # Imported here so that `import governance` stays cheap and free of side effects.
    from flask import jsonify
    from flask_openapi3 import Info, OpenAPI
    from werkzeug.routing import IntegerConverter

    from governance import api, health
    from governance.accounts.views import bp as accounts_bp
    from governance.approvals.views import bp as approvals_bp
    from governance.audit import views as audit_views
    from governance.authz.authzen import bp as authzen_bp
    from governance.authz.service import Authorizer
    from governance.authz.views import bp as authz_bp
    from governance.config import load_config
    from governance.console import views as console_views
    from governance.datasets import views as datasets_views
    from governance.db import BIGINT_MAX, Database
    from governance.domains.views import bp as domains_bp
    from governance.errors import register_error_handlers, validation_error_response
    from governance.gateway.views import bp as gateway_bp
    from governance.models.views import bp as models_bp
    from governance.training.views import bp as training_bp
    from governance.views_common import SECURITY_SCHEMES

    class BoundedIntConverter(IntegerConverter):
        def __init__(self, map, *args, **kwargs) -> None:
            kwargs.setdefault("max", BIGINT_MAX)
            super().__init__(map, *args, **kwargs)

    # Everything the service writes (database journals, blobs, exports) is owner-only.
    os.umask(0o077)
    settings = load_config(config)
    app = OpenAPI(
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
    app.json.sort_keys = False
    # `<int:...>` in routes stops at 64 bits: a larger id matches no route (404), never
    # reaching a database column it would overflow.
    app.url_map.converters["int"] = BoundedIntConverter

    register_error_handlers(app)
    Database(settings["GOVERNANCE_DATABASE_URL"]).init_app(app)
    Authorizer(settings["GOVERNANCE_POLICY_DIR"], float(settings["POLICY_CHECK_SECONDS"])).init_app(
        app
    )
    audit_views.init_app(app)
    datasets_views.init_app(app)
    api.init_app(app)

    for blueprint in (
        health.bp,
        accounts_bp,
        domains_bp,
        datasets_views.bp,
        authz_bp,
        authzen_bp,
        audit_views.bp,
        approvals_bp,
        models_bp,
        training_bp,
        gateway_bp,
    ):
        app.register_api(blueprint)
    console_views.init_app(app)
    app.add_url_rule("/openapi.json", "openapi_json", lambda: jsonify(app.api_doc))
    app.add_url_rule("/", "index", index)
    return app
