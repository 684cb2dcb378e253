"""The decision API (may this principal do that?) and the policy in force, with reloads."""

from __future__ import annotations

from flask import g
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from governance.audit.models import AuthorizeRequest, AuthorizeResponse
from governance.authz.policy import SYSTEM_DOMAIN
from governance.authz.service import PolicyRefused
from governance.guard import (
    audit_log,
    current_principal,
    decision_event,
    get_authorizer,
    log_event,
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


class PolicyRead(BaseModel):
    policy_hash: str
    directory: str
    rules: int
    role_bindings: int
    refused: dict | None = Field(
        default=None, description="The last version of the files refused, and why."
    )


def policy_read() -> dict:
    authorizer = get_authorizer()
    policy = authorizer.policy
    refused = None
    if authorizer.refused:
        refused = {"policy_hash": authorizer.refused[0], "problems": authorizer.refused[1]}
    return PolicyRead(
        policy_hash=policy.hash,
        directory=str(policy.directory),
        rules=len(policy.rules),
        role_bindings=len(policy.groupings),
        refused=refused,
    ).model_dump()


@bp.get("/policy", responses={200: PolicyRead})
def show_policy():
    """Show the policy version in force (its hash) and the last refused version, if any."""
    require("read", "policy", SYSTEM_DOMAIN)
    return policy_read()


@bp.post("/policy/reload", responses={200: PolicyRead})
def reload_policy():
    """Reload the policy files; a version that fails lint or its tests is refused (422)."""
    require("reload", "policy", SYSTEM_DOMAIN)
    before = get_authorizer().policy.hash
    try:
        policy = get_authorizer().reload()
    except PolicyRefused as exc:
        log_event("policy.reload", "policy", None, "refused", exc.details)
        raise
    log_event("policy.reload", "policy", None, "ok", {"from": before, "to": policy.hash})
    return policy_read()
