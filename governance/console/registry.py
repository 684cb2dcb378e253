"""The console's registry: its session handling and every page module, on one blueprint."""

from __future__ import annotations

from flask import Flask

from governance.console import session
from governance.console.blueprint import bp
from governance.console.pages import approvals, audit, datasets, home, models, policy, webhooks

PAGE_MODULES = (session, home, approvals, datasets, models, audit, webhooks, policy)


def init_app(app: Flask) -> None:
    """Register the console blueprint (its routes are those of PAGE_MODULES)."""
    app.register_blueprint(bp)
