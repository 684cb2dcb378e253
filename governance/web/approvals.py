"""HTTP API of approvals: request, inbox, detail with evidence, signed decisions."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from governance.approvals import service
from governance.approvals.models import (
    BaseModelUseCreate,
    DatasetUseCreate,
    DecisionCreate,
    DecisionRead,
    RequestDetail,
    RequestList,
    RequestRead,
)
from governance.approvals.rules import load_approval_rules
from governance.datasets import service as datasets
from governance.db import get_session
from governance.domains.service import get_domain
from governance.families import intake
from governance.flows import dataset_use
from governance.web.approvals_lookup import (
    evidence,
    inbox_requests,
    policy_dir,
    readable_request,
    readable_requests,
    record_decision,
)
from governance.web.common import ERROR_RESPONSES, SECURITY
from governance.web.datasets_lookup import dataset_for
from governance.web.guard import current_actor, get_authorizer, require

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


@bp.post("/dataset-use", responses={201: RequestRead})
def request_dataset_use(body: DatasetUseCreate):
    """Ask reviewers to approve one scanned dataset version for training one model family."""
    dataset, domain = dataset_for(body.dataset_id, "request", "approval")
    session = get_session()
    version = datasets.get_version(session, dataset, body.version)
    request = dataset_use.request_dataset_use(
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


@bp.post("/base-model-use", responses={201: RequestRead})
def request_base_model_use(body: BaseModelUseCreate):
    """Ask a domain's reviewers to approve building models on a registered base model."""
    require("request", "approval", body.domain)
    session = get_session()
    domain = get_domain(session, body.domain)
    request = intake.request_base_use(
        session,
        intake.find_base_model(session, body.base_model),
        domain,
        load_approval_rules(policy_dir()),
        actor=current_actor(),
    )
    return RequestRead(**service.request_read(session, request)).model_dump(mode="json"), 201


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


@bp.get("/<uid:uid>", responses={200: RequestDetail})
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


@bp.post("/<uid:uid>/decisions", responses={201: DecisionRead})
def decide(path: RequestPath, body: DecisionCreate):
    """Approve or reject with a comment; the decision is signed and audited."""
    readable_request(path.uid, "decide")
    row = record_decision(path.uid, body)
    return DecisionRead(**row.model_dump()).model_dump(mode="json"), 201
