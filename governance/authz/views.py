"""The decision API: other services ask whether a principal may do something."""

from __future__ import annotations

from flask import g
from flask_openapi3 import APIBlueprint, Tag

from governance.audit.models import AuthorizeRequest, AuthorizeResponse
from governance.authz.service import (
    audit_log,
    current_principal,
    decision_event,
    get_authorizer,
    require,
)
from governance.views_common import ERROR_RESPONSES, SECURITY

bp = APIBlueprint(
    "authz",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="authorization", description="Policy decisions for other services")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


@bp.post("/authorize", responses={200: AuthorizeResponse})
def authorize(body: AuthorizeRequest):
    """Decide whether subject may perform action on object in domain; the answer is logged."""
    # The caller needs the right to ask about this domain at all.
    require("query", "authorization", body.domain)
    decision = get_authorizer().decide(body.subject, body.domain, body.object, body.action)
    event = decision_event(decision, {"asked_by": current_principal().name})
    event.request_id = g.get("request_id")
    seq = audit_log().append(event)
    return AuthorizeResponse(
        allowed=decision.allowed,
        decision="allow" if decision.allowed else "deny",
        rule=list(decision.rule) if decision.rule else None,
        policy_hash=decision.policy_hash,
        audit_seq=seq,
    ).model_dump()
