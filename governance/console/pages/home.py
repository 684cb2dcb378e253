"""The console's home page."""

from __future__ import annotations

from flask import (
    current_app,
    g,
    render_template,
)

from governance.console.blueprint import (
    bp,
)
from governance.web.approvals_lookup import (
    inbox_requests,
)
from governance.web.guard import (
    get_authorizer,
    mark_checked,
)

# --- home -----------------------------------------------------------------------------------


@bp.get("/")
def home():
    """Who I am, the roles I hold where, and what waits for me."""
    policy = get_authorizer().policy
    mark_checked()  # Shows only the caller's own role bindings and inbox.
    return render_template(
        "console/home.html",
        section="home",
        bindings=sorted(policy.role_bindings(g.principal.name), key=lambda b: (b[1], b[0])),
        inbox_count=len(inbox_requests()),
        session_row=g.console_session,
        idle_minutes=current_app.config["CONSOLE_IDLE_MINUTES"],
    )
