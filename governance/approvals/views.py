"""HTTP API of approvals: request, inbox, detail with evidence, signed decisions."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field
from sqlmodel import select

from governance.approvals import service
from governance.approvals.models import (
    ApprovalRequest,
    DatasetUseCreate,
    DecisionCreate,
    DecisionRead,
    RequestDetail,
    RequestList,
    RequestRead,
)
from governance.approvals.rules import load_approval_rules
from governance.audit.views import get_audit_log
from governance.authz.service import check, current_actor, get_authorizer, mark_checked
from governance.datasets import service as datasets
from governance.datasets.views import dataset_for
from governance.db import get_session
from governance.domains.models import Domain
from governance.errors import NotFound
from governance.views_common import ERROR_RESPONSES, SECURITY

bp = APIBlueprint(
    "approvals",
    __name__,
    url_prefix="/api/v1/approvals",
    abp_tags=[Tag(name="approvals", description="Legal and privacy approval workflows")],
    abp_security=SECURITY,
    abp_responses=ERROR_RESPONSES,
)


class RequestPath(BaseModel):
    uid: str = Field(pattern=r"^[0-9a-f]{32}$")


class RequestQuery(BaseModel):
    state: str | None = Field(default=None, max_length=16)
    domain: str | None = Field(default=None, max_length=63)


def policy_dir() -> Path:
    return Path(current_app.config["GOVERNANCE_POLICY_DIR"])


def readable_request(uid: str, action: str = "read") -> tuple[ApprovalRequest, Domain]:
    """A request the caller may act on; another domain's is indistinguishable from absent."""
    session = get_session()
    found = session.exec(select(ApprovalRequest).where(ApprovalRequest.uid == uid)).first()
    domain = session.get(Domain, found.domain_id) if found else None
    decision = check(action, "approval", domain.name if domain else "unknown", {"uid": uid})
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


@bp.post("/dataset-use", responses={201: RequestRead})
def request_dataset_use(body: DatasetUseCreate):
    """Ask reviewers to approve one scanned dataset version for training one model family."""
    dataset, domain = dataset_for(body.dataset_id, "request", "approval")
    session = get_session()
    version = datasets.get_version(session, dataset, body.version)
    request = service.request_dataset_use(
        session,
        domain,
        dataset,
        version,
        body.family,
        policy_dir(),
        load_approval_rules(policy_dir()),
        actor=current_actor(),
    )
    return RequestRead(**service.request_read(session, request)).model_dump(mode="json"), 201


def inbox_requests() -> list[ApprovalRequest]:
    """Pending requests that need a role I hold, in my domains, that I may decide."""
    actor = current_actor()
    mark_checked()  # The inbox lists only what the policy lets this principal decide.
    session = get_session()
    policy = get_authorizer().policy
    items = []
    for request in service.inbox(session, actor.principal, policy, policy_dir(), actor):
        domain = session.get(Domain, request.domain_id)
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
        domain = session.get(Domain, request.domain_id)
        if domain_name and domain.name != domain_name:
            continue
        if policy.decide(actor.principal, domain.name, "approval", "read").allowed:
            service.refresh_state(session, request, policy_dir(), actor)
            items.append(request)
    return items


@bp.get("/inbox", responses={200: RequestList})
def inbox():
    """Pending requests that need a role I hold, in my domains, that I may decide."""
    session = get_session()
    items = [RequestRead(**service.request_read(session, r)) for r in inbox_requests()]
    return RequestList(items=items).model_dump(mode="json")


@bp.get("", responses={200: RequestList})
def list_requests(query: RequestQuery):
    """List requests in the domains where I may read approvals, newest first."""
    session = get_session()
    items = [
        RequestRead(**service.request_read(session, r))
        for r in readable_requests(query.state, query.domain)
    ]
    return RequestList(items=items).model_dump(mode="json")


@bp.get("/<uid>", responses={200: RequestDetail})
def show_request(path: RequestPath):
    """A request with its evidence, decisions and the policy in force."""
    request, _domain = readable_request(path.uid)
    session = get_session()
    service.refresh_state(session, request, policy_dir(), current_actor())
    return RequestDetail(
        **service.request_read(session, request),
        summary=request.summary,
        evidence=evidence(request),
        policy_in_force=get_authorizer().policy.hash,
    ).model_dump(mode="json")


@bp.post("/<uid>/decisions", responses={201: DecisionRead})
def decide(path: RequestPath, body: DecisionCreate):
    """Approve or reject with a comment; the decision is signed and audited."""
    readable_request(path.uid, "decide")
    row = record_decision(path.uid, body)
    return DecisionRead(**row.model_dump()).model_dump(mode="json"), 201


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
        key=get_audit_log().signing_key,
        actor=current_actor(),
    )
