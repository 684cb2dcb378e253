"""The decision API (may this principal do that?) and the policy in force, with reloads."""

from __future__ import annotations

from flask import g, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from governance import runtime
from governance.approvals.service import roles_held
from governance.audit.models import AuthorizeRequest, AuthorizeResponse
from governance.authz.policy import SYSTEM_DOMAIN, UNSCOPED_DOMAIN
from governance.authz.service import PolicyRefused
from governance.db import get_session
from governance.domains.service import list_domains
from governance.errors import Forbidden, InvalidInput
from governance.jobs.models import JobKind, JobStatus
from governance.policy_review import changes
from governance.policy_review.replay import parse_since
from governance.web import jobs_lookup as jobs
from governance.web.audit_lookup import permitted_domains
from governance.web.common import ERROR_RESPONSES, SECURITY
from governance.web.guard import (
    append,
    current_principal,
    decision_event,
    get_authorizer,
    log_event,
    require,
)

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
    seq = append([event])[0]
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
    approval_required: bool = Field(
        description="Whether approvals.yaml of the policy in force gates policy changes."
    )
    approval: str | None = Field(
        default=None,
        description="The approved policy-change request that covers the policy in force, if "
        "any (none for the instance's first policy, or files a process started on without "
        "approval).",
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
        approval_required=changes.approval_needed(policy),
        approval=approved.uid
        if (approved := changes.approved_change(get_session(), policy.hash))
        else None,
    ).model_dump()


@bp.get("/policy", responses={200: PolicyRead})
def show_policy():
    """Show the policy version in force (its hash) and the last refused version, if any."""
    require("read", "policy", SYSTEM_DOMAIN)
    return policy_read()


class BreakGlass(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=10, max_length=500, description="Why it cannot wait.")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    break_glass: BreakGlass | None = Field(
        default=None,
        description="Put an unapproved policy in force in an emergency: only a role named in "
        "approvals.yaml's policy-change break_glass may; audited, and the approval is "
        "requested at once, after the fact.",
    )


@bp.post("/policy/reload", responses={200: PolicyRead})
def reload_policy(body: ReloadRequest):
    """Reload the policy files. A version that fails lint or its tests is refused (422); one
    that no approved policy-change request covers is refused (409) while approvals.yaml
    requires approval for policy changes."""
    require("reload", "policy", SYSTEM_DOMAIN)
    authorizer = get_authorizer()
    before = authorizer.policy.hash
    forced = body.break_glass is not None
    if forced:
        roles = changes.break_glass_roles(authorizer.policy)
        held = roles_held(authorizer.policy, current_principal().name, SYSTEM_DOMAIN)
        if not set(roles) & held:
            log_event(
                "policy.break-glass", "policy", None, "deny", {"reason": body.break_glass.reason}
            )
            raise Forbidden(
                "break-glass is not open to you: approvals.yaml's policy-change rule names "
                f"{', '.join(roles) or 'no role'} for it",
                details={"break_glass": list(roles)},
            )
    try:
        policy = authorizer.reload(break_glass=forced)
    except PolicyRefused as exc:
        log_event("policy.reload", "policy", None, "refused", exc.details)
        raise
    if forced and policy.hash != before:
        details = {"from": before, "to": policy.hash, "reason": body.break_glass.reason}
        log_event("policy.break-glass", "policy", None, "ok", details)
        # The approval follows the fact: its review runs now, under the rules in force.
        # The files forced into force are kept as a proposal too, so the review finds them.
        changes.store_proposal(runtime.current().home, changes.files_of(policy.directory))
        start_review(policy.hash, "90d", request_approval=True, base=before)
    log_event(
        "policy.reload",
        "policy",
        None,
        "ok",
        {"from": before, "to": policy.hash, "break_glass": forced},
    )
    return policy_read()


class ProposedPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(
        description="Every file of the proposed policy directory, by relative path "
        "(model.conf, policy.csv, approvals.yaml, tests/*.yaml, ...)."
    )
    since: str = Field(
        default="90d",
        max_length=40,
        description="The window of recorded decisions to replay: 90d, 12w, 24h, an ISO date "
        "or `all`.",
    )


@bp.before_request
def larger_bodies_for_policies():
    # A company's policy.csv is megabytes; only these two routes take bodies that large.
    if request.endpoint in ("authz.propose_change", "authz.replay_policy"):
        request.max_content_length = changes.MAX_BYTES + 2**20


def readable_log_domains() -> list[str] | None:
    """The domains whose decisions the caller may read (None: all of them)."""
    allowed = permitted_domains("read")
    every = {SYSTEM_DOMAIN, UNSCOPED_DOMAIN, *(d.name for d in list_domains(get_session()))}
    return None if every <= allowed else sorted(allowed)


def start_review(
    digest: str, since: str, *, request_approval: bool, domains=None, base: str | None = None
):
    params = {
        "policy_hash": digest,
        "base_policy": base or get_authorizer().policy.hash,
        "since": since,
        "request": request_approval,
        "domains": domains,
    }
    return jobs.start(
        get_session(),
        JobKind.POLICY_REVIEW,
        changes.subject_of(digest),
        SYSTEM_DOMAIN,
        "policy",
        params,
    )


def stored(body: ProposedPolicy) -> str:
    try:
        parse_since(body.since)
    except ValueError as exc:
        raise InvalidInput(str(exc), details=[{"field": "since"}]) from exc
    return changes.store_proposal(runtime.current().home, body.files)


@bp.post("/policy/replay", responses={202: JobStatus})
def replay_policy(body: ProposedPolicy):
    """Replay the recorded decisions of a window against a proposed policy, as a job: its
    result lists the decisions that would change (by principal, domain, action and object
    kind, with examples and the rule deciding each side), lint, tests and the diff. Only the
    domains whose audit entries the caller may read are replayed."""
    require("read", "policy", SYSTEM_DOMAIN)
    digest = stored(body)
    return start_review(digest, body.since, request_approval=False, domains=readable_log_domains())


@bp.post("/policy/changes", responses={202: JobStatus})
def propose_change(body: ProposedPolicy):
    """Propose a policy change for approval, as a job: the service lints and tests the files,
    diffs them against the policy in force and replays the recorded decisions of the window;
    if lint and tests pass it opens a `policy-change` approval request (system domain) that
    carries all of it as evidence. Reload accepts the files once the request is approved."""
    require("propose", "policy", SYSTEM_DOMAIN)
    digest = stored(body)
    # The replay covers what the proposer may read; the evidence names the domains when
    # that is not the whole log, so reviewers see how far it reached.
    return start_review(digest, body.since, request_approval=True, domains=readable_log_domains())
