"""The request guard: who is calling, may they, and the audit entry that says so.

Views call `require`/`check` (decide for the current principal and log the decision durably),
`current_actor` (the actor of the audit entries of their state changes) and `log_event`.
These use Flask's request context (`g`); the authorizer they ask is pure
(`governance.authz.service`), and both it and the audit log come from the runtime.
"""

from __future__ import annotations

from flask import g

from governance import runtime
from governance.accounts.models import Principal
from governance.accounts.service import Caller
from governance.audit.service import Actor, AuditEvent, AuditLog, append_events
from governance.authz.policy import Decision
from governance.authz.service import Authorizer
from governance.db import get_session, has_written, on_rollback
from governance.domains.models import Domain
from governance.domains.service import list_domains
from governance.errors import Forbidden, Unauthenticated


def get_authorizer() -> Authorizer:
    """The authorizer of the current app."""
    return runtime.current().authorizer


def current_principal() -> Principal | Caller:
    """Return the principal this request authenticated as."""
    principal = g.get("principal")
    if principal is None:
        raise Unauthenticated("authentication required")
    return principal


def current_actor() -> Actor:
    """Return the Actor of this request, for the audit entries of its state changes."""
    return Actor(
        principal=current_principal().name,
        request_id=g.get("request_id"),
        policy_hash=get_authorizer().policy.hash,
    )


def audit_log() -> AuditLog:
    """Return the AuditLog of the current app."""
    return runtime.current().audit_log


def log_event(
    action: str,
    obj: str,
    domain: str | None,
    decision: str,
    details: dict | None = None,
    *,
    principal: str | None = None,
) -> int:
    """Append an event of the current request to the audit log, after the entries the request
    held back (in the same group commit); return its seq once all are durable."""
    event = AuditEvent(
        principal=principal or current_principal().name,
        action=action,
        object=obj,
        domain=domain,
        decision=decision,
        policy_hash=get_authorizer().policy.hash,
        request_id=g.get("request_id"),
        details=details or {},
    )
    return append([*g.pop("audit_held", ()), event])[-1]


def settle_held() -> None:
    """Append the entries this request held back, if nothing appended them yet. The API's
    after-request hook calls it: no answer leaves before its audit entries are durable."""
    held = g.pop("audit_held", None)
    if held:
        append(held)


def append(events: list[AuditEvent]) -> list[int]:
    """Append the request's own entries (its decisions and events): durably now, through the
    log's writer, while the request's transaction has written nothing; once it has, inside that
    transaction, as the writer (on its own connection) would wait for the locks it holds.
    Should that transaction roll back (the request failing, or a view or service rolling
    back), they are appended again, durably: a decision is recorded whether or not the work
    it allowed was done."""
    session = g.get("db_session")
    if session is not None and has_written(session):
        seqs = append_events(session, events)
        log = audit_log()
        on_rollback(session, lambda: log.append_many(events))
        return seqs
    return audit_log().append_many(events)


def decision_event(decision: Decision, details: dict | None = None) -> AuditEvent:
    """Describe an authorization decision as an audit event."""
    return AuditEvent(
        principal=decision.subject,
        action=decision.action,
        object=decision.obj,
        domain=decision.domain,
        decision="allow" if decision.allowed else "deny",
        policy_hash=decision.policy_hash,
        request_id=g.get("request_id"),
        details={"rule": list(decision.rule) if decision.rule else None, **(details or {})},
    )


def allowed_domains(obj: str, action: str) -> list[Domain]:
    """The data domains where the current principal may perform action on obj.

    Nothing is logged: a listing logs once, naming what it showed.
    """
    principal = current_principal()
    policy = get_authorizer().policy
    return [
        d
        for d in list_domains(get_session())
        if policy.decide(principal.name, d.name, obj, action).allowed
    ]


def mark_checked() -> None:
    """Note that this request's view has made its authorization decision."""
    g.authz_checked = True


def check(
    action: str, obj: str, domain: str, details: dict | None = None, *, queue: bool = False
) -> Decision:
    """Decide for the current principal and log the decision, without raising: durably now,
    or (`queue`) held back and appended with the request's next entry, or before it answers
    (a model query appends its own entry later: both go in one transaction)."""
    principal = current_principal()
    decision = get_authorizer().decide(principal.name, domain, obj, action)
    if queue:
        g.setdefault("audit_held", []).append(decision_event(decision, details))
    else:
        append([decision_event(decision, details)])
    mark_checked()
    return decision


def require(action: str, obj: str, domain: str) -> Decision:
    """Allow the current principal to go on, or raise Forbidden."""
    decision = check(action, obj, domain)
    if not decision.allowed:
        raise Forbidden(
            f"{decision.subject} may not {action} '{obj}' in domain {domain}",
            details={"domain": domain, "object": obj, "action": action},
        )
    return decision
