"""Who may see which webhook delivery: the API and the console decide the same way."""

from __future__ import annotations

from sqlmodel import select

from governance.authz.policy import UNSCOPED_DOMAIN
from governance.db import get_session
from governance.errors import NotFound
from governance.web.guard import check, require
from governance.webhooks.models import WebhookDelivery


def delivery_for(uid: str, action: str) -> WebhookDelivery:
    """A delivery the caller may act on. One in a domain where they may not read webhooks
    answers exactly as a missing one does (404), so neither its existence nor its domain is
    disclosed; one they may read but not act on is a 403."""
    session = get_session()
    found = session.exec(select(WebhookDelivery).where(WebhookDelivery.uid == uid)).first()
    domain = found.domain if found is not None else UNSCOPED_DOMAIN
    # Decide (and log) either way, so that probing unknown ids leaves a trace too.
    visible = check("read", "webhook", domain, {"delivery": uid}).allowed
    if found is None or not visible:
        raise NotFound(f"webhook delivery {uid!r} not found")
    if action != "read":
        require(action, "webhook", domain)
    return found
