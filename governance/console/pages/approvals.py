"""Console pages of approvals: the reviewer's inbox, a request with its evidence, decisions."""

from __future__ import annotations

from flask import (
    redirect,
    render_template,
    request,
    url_for,
)
from pydantic import ValidationError
from sqlmodel import select

from governance import runtime
from governance.approvals import service as approvals
from governance.approvals.models import DecisionCreate
from governance.approvals.rules import load_approval_rules
from governance.audit.models import (
    AuditEntry,
)
from governance.audit.service import latest_checkpoint
from governance.console.blueprint import (
    NOTICES,
    REQUEST_STATES,
    UID,
    bp,
)
from governance.db import get_session
from governance.errors import (
    GovernanceError,
    InvalidInput,
    NotFound,
    invalid_input,
)
from governance.web.approvals_lookup import (
    evidence,
    inbox_requests,
    policy_dir,
    readable_request,
    readable_requests,
    record_decision,
)
from governance.web.guard import (
    allowed_domains,
    current_actor,
    get_authorizer,
)

# --- approvals ------------------------------------------------------------------------------


def request_rows(items) -> list[dict]:
    session = get_session()
    return [{**approvals.request_read(session, r), "summary": r.summary} for r in items]


@bp.get("/approvals", endpoint="approvals")
def approvals_page():
    """My inbox, and every request I may read, filtered by state and domain."""
    state = request.args.get("state") or None
    domain = request.args.get("domain") or None
    inbox = request_rows(inbox_requests())
    listed = request_rows(readable_requests(state, domain))
    return render_template(
        "console/approvals.html",
        section="approvals",
        may_decide=bool(allowed_domains("approval", "decide")),
        inbox=inbox,
        listed=listed,
        state=state,
        domain=domain,
        domains=sorted(d.name for d in allowed_domains("approval", "read")),
        states=REQUEST_STATES,
    )


def approval_context(uid: str) -> dict:
    """Everything the detail page shows about one request the caller may read."""
    if not UID.match(uid):
        raise NotFound("no such approval request", details={"uid": uid})
    approval, domain = readable_request(uid)
    session = get_session()
    actor = current_actor()
    approvals.refresh_state(session, approval, policy_dir(), actor)
    decisions = approvals.decisions_of(session, approval)
    entries = {
        e.seq: e
        for e in session.exec(
            select(AuditEntry).where(
                AuditEntry.seq.in_([d.audit_seq for d in decisions if d.audit_seq])
            )
        )
    }
    checkpoint = latest_checkpoint(session)
    problems = approvals.verify_decisions(
        session, approval, runtime.current().audit_log.signing_key.public_key()
    )
    rules = load_approval_rules(policy_dir())
    policy = get_authorizer().policy
    may_decide = policy.decide(actor.principal, domain.name, "approval", "decide").allowed
    role_choices: list[str] = []
    blocked = None
    if approval.state != approvals.RequestState.PENDING:
        blocked = f"This request is {approval.state}; it takes no more decisions."
    elif not may_decide:
        blocked = f"The policy does not let you decide approvals in {domain.name}."
    else:
        try:
            role_choices = [
                approvals.decision_role(session, approval, actor.principal, None, policy)
            ]
        except InvalidInput as exc:
            role_choices = list((exc.details or {}).get("choices") or [])
        except GovernanceError as exc:
            blocked = exc.message + "."
    return {
        "approval": approval,
        "missing_roles": approvals.missing_roles(approval, decisions),
        "domain": domain,
        "evidence": evidence(approval),
        "decisions": decisions,
        "entries": entries,
        "checkpoint": checkpoint,
        "signature_problems": problems,
        "rule": rules.rule_for(domain.name, approval.kind),
        "policy_hash": policy.hash,
        "role_choices": role_choices,
        "blocked": blocked,
    }


@bp.get("/approvals/<uid>")
def approval(uid: str):
    """A request with its evidence, decisions, audit entries and the policy in force."""
    return render_template(
        "console/approval.html",
        section="approvals",
        notice=NOTICES.get(request.args.get("notice", "")),
        comment="",
        **approval_context(uid),
    )


@bp.post("/approvals/<uid>/decisions")
def decide(uid: str):
    """Approve or reject with a comment, exactly as the API's decision endpoint does."""
    if not UID.match(uid):
        raise NotFound("no such approval request", details={"uid": uid})
    comment = request.form.get("comment", "").strip()
    readable_request(uid, "decide")
    try:
        try:
            # The API's own schema; the console also insists on a comment.
            body = DecisionCreate(
                decision=request.form.get("decision", ""),
                comment=comment,
                role=request.form.get("role") or None,
            )
        except ValidationError as exc:
            raise invalid_input(exc) from exc
        if not comment:
            raise InvalidInput("a comment is required", details=[{"field": "comment"}])
        record_decision(uid, body)
    except GovernanceError as exc:
        get_session().rollback()
        # Show the request again with the refusal and the comment as typed.
        # An error about the form's own field is shown beside it (the top of the page is far);
        # any other refusal at the top.
        fields = {
            d.get("field") for d in (exc.details if isinstance(exc.details, list) else []) if d
        }
        beside = "comment" in fields
        page = render_template(
            "console/approval.html",
            section="approvals",
            error=None if beside else exc,
            field_error=exc.message if beside else None,
            comment=comment,
            **approval_context(uid),
        )
        return page, exc.status
    return redirect(url_for("console.approval", uid=uid, notice="decided") + "#decisions")
