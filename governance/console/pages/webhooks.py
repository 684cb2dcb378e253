"""Console page of lifecycle webhooks: the delivery log, and redelivery of a failed one."""

from __future__ import annotations

from flask import g, redirect, render_template, request, url_for

from governance.console.blueprint import NOTICES, bp
from governance.db import get_session
from governance.errors import InvalidInput
from governance.web.audit_lookup import permitted_domains
from governance.web.guard import current_actor, get_authorizer
from governance.web.webhooks_lookup import delivery_for
from governance.webhooks import service

STATES = ("pending", "delivered", "failed")


@bp.get("/webhooks")
def webhooks():
    """Deliveries to each domain's subscribers, newest first, with every attempt."""
    allowed = permitted_domains("read", "webhook")
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        raise InvalidInput(
            "state must be pending, delivered or failed", details=[{"field": "state"}]
        )
    session = get_session()
    rows = service.list_deliveries(session, sorted(allowed), state=state, limit=100)
    policy = get_authorizer().policy
    return render_template(
        "console/webhooks.html",
        section="webhooks",
        deliveries=[service.delivery_read(session, row, with_log=True) for row in rows],
        may_redeliver={
            d for d in allowed if policy.decide(g.principal.name, d, "webhook", "redeliver").allowed
        },
        state=state,
        states=STATES,
        notice=NOTICES.get(request.args.get("notice", "")),
    )


@bp.post("/webhooks/<uid>/redeliver")
def webhook_redeliver(uid: str):
    """Queue a delivery again (audited), as the API's redeliver does."""
    delivery = delivery_for(uid, "redeliver")
    service.redeliver(get_session(), delivery, current_actor())
    return redirect(url_for("console.webhooks", notice="redelivered"))
