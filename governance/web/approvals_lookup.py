"""Approval requests as a caller may see and decide them: shared by the API and the console."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from governance import runtime
from governance.approvals import service
from governance.approvals.models import (
    ApprovalRequest,
    DecisionCreate,
)
from governance.authz.policy import UNSCOPED_DOMAIN
from governance.db import get_session
from governance.domains.models import Domain
from governance.errors import NotFound
from governance.web.guard import check, current_actor, get_authorizer, mark_checked


def policy_dir() -> Path:
    return runtime.current().policy_dir


def readable_request(uid: str, action: str = "read") -> tuple[ApprovalRequest, Domain]:
    """A request the caller may act on; another domain's is indistinguishable from absent."""
    session = get_session()
    found = session.exec(select(ApprovalRequest).where(ApprovalRequest.uid == uid)).first()
    domain = service.request_domain(session, found) if found else None
    decision = check(action, "approval", domain.name if domain else UNSCOPED_DOMAIN, {"uid": uid})
    if decision.allowed and found is not None:
        return found, domain
    raise NotFound("no such approval request", details={"uid": uid})


def evidence(request: ApprovalRequest) -> dict:
    """What the reviewer judges: receipt counts and redacted samples, or lineage."""
    if request.kind != service.DATASET_USE:
        return dict(request.summary.get("evidence") or {})
    from governance.pii.models import ScanReceipt

    receipt = get_session().get(ScanReceipt, request.summary["receipt"])
    if receipt is None:
        return {}
    return {
        "receipt": receipt.id,
        "verdict": receipt.verdict,
        "counts": receipt.counts,
        "records_total": receipt.records_total,
        "records_redacted": receipt.records_redacted,
        "records_dropped": receipt.records_dropped,
        "records_quarantined": receipt.records_quarantined,
        "records_kept": receipt.records_kept,
        "canary_recall": receipt.canary_recall,
        "canaries": receipt.canaries,
        # Samples were redacted when the scan stored them; no raw value is ever shown.
        "redacted_samples": receipt.samples,
        "scanner": receipt.scanner,
    }


def inbox_requests() -> list[ApprovalRequest]:
    """Pending requests that need a role I hold, in my domains, that I may decide."""
    actor = current_actor()
    mark_checked()  # The inbox lists only what the policy lets this principal decide.
    session = get_session()
    policy = get_authorizer().policy
    items = []
    for request in service.inbox(session, actor.principal, policy, policy_dir(), actor):
        domain = service.request_domain(session, request)
        if policy.decide(actor.principal, domain.name, "approval", "decide").allowed:
            items.append(request)
    return items


def readable_requests(state: str | None, domain_name: str | None) -> list[ApprovalRequest]:
    """Requests in the domains where I may read approvals, newest first, states refreshed."""
    actor = current_actor()
    mark_checked()  # Only requests of domains the policy lets this principal read are listed.
    session = get_session()
    policy = get_authorizer().policy
    statement = select(ApprovalRequest).order_by(ApprovalRequest.id.desc()).limit(500)
    if state:
        statement = statement.where(ApprovalRequest.state == state)
    items = []
    for request in session.exec(statement).all():
        domain = service.request_domain(session, request)
        if domain_name and domain.name != domain_name:
            continue
        if policy.decide(actor.principal, domain.name, "approval", "read").allowed:
            service.refresh_state(session, request, policy_dir(), actor)
            items.append(request)
    return items


def record_decision(uid: str, body: DecisionCreate):
    """Record the caller's signed decision under the policy in force (the API and the console)."""
    return service.decide(
        get_session(),
        uid,
        body.decision,
        body.comment,
        body.role,
        policy=get_authorizer().policy,
        policy_dir=policy_dir(),
        key=runtime.current().audit_log.signing_key,
        actor=current_actor(),
    )
