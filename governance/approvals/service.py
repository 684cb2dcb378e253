"""Approval requests and decisions: separation of duties, signatures, states.

A request binds one exact subject by its digest: for data, the version's content hash, its
passing scan receipt under the rules in force and the model family it may train; for a
promotion, the model version's lineage digest. Whenever a request is read or decided the
digest is computed again; if the subject changed the request is invalidated, since the
reviewers judged something else.

Decisions serialize on the request row: a decision first bumps the row's `lock_version`
(taking the row's write lock on PostgreSQL, the database's on SQLite), then reads, checks
and writes; unique constraints on (request, role) and (request, reviewer) back that up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlmodel import Session, select

from audit.log import canonical, key_id
from governance.approvals.models import ApprovalDecision, ApprovalRequest, RequestState
from governance.approvals.rules import ApprovalRules
from governance.approvals.subjects import DATASET_USE, MODEL_PROMOTION, resolver_for
from governance.audit.service import Actor, format_time, record
from governance.authz.policy import SYSTEM_DOMAIN, PolicySet
from governance.db import utcnow
from governance.domains.models import Domain
from governance.errors import Conflict, Forbidden, InvalidInput, NotFound

__all__ = ["DATASET_USE", "MODEL_PROMOTION"]


# --- requests ---------------------------------------------------------------------------------


def system_domain() -> Domain:
    """The domain requests about the service itself (policy changes) are made in: the policy's
    `system` domain, which is no data domain and has no row (the request's domain_id is NULL).
    A transient object, never added to a session."""
    return Domain(name=SYSTEM_DOMAIN, jurisdiction="-", retention_days=0, created_by="system")


def request_domain(session: Session, request: ApprovalRequest) -> Domain:
    """The domain a request belongs to (the system domain when it names none)."""
    if request.domain_id is None:
        return system_domain()
    return session.get(Domain, request.domain_id)


def open_request(
    session: Session,
    domain: Domain,
    kind: str,
    subject: str,
    digest: str,
    family: str,
    summary: dict[str, Any],
    rules: ApprovalRules,
    *,
    actor: Actor,
    also_excluded: tuple[str, ...] = (),
) -> ApprovalRequest:
    """Open a request for a subject; an open request for the same subject is superseded."""
    rule = rules.rule_for(domain.name, kind)
    now = utcnow()
    for old in session.exec(
        select(ApprovalRequest).where(
            ApprovalRequest.kind == kind,
            ApprovalRequest.subject == subject,
            ApprovalRequest.family == family,
            ApprovalRequest.domain_id == domain.id,
            ApprovalRequest.state.in_(RequestState.OPEN),
        )
    ):
        close(session, old, RequestState.SUPERSEDED, "a newer request for the same subject", actor)
    auto = family in rule.auto_approve
    request = ApprovalRequest(
        uid=uuid.uuid4().hex,
        domain_id=domain.id,
        kind=kind,
        subject=subject,
        subject_digest=digest,
        family=family,
        summary=summary,
        required_roles=[] if auto else list(rule.required),
        excluded=sorted({actor.principal, *also_excluded}),
        state=RequestState.APPROVED if auto else RequestState.PENDING,
        state_reason="approvals.yaml approves this family without review" if auto else None,
        requested_by=actor.principal,
        requested_at=now,
        expires_at=now + dt.timedelta(days=rule.expires_days),
        closed_at=now if auto else None,
        policy_hash=actor.policy_hash or "",
    )
    session.add(request)
    session.flush()
    record(
        session,
        actor,
        "approval.request",
        f"approval/{request.uid}",
        domain.name,
        details={
            "kind": kind,
            "subject": subject,
            "subject_digest": digest,
            "family": family,
            "required_roles": request.required_roles,
            "state": request.state,
        },
    )
    return request


def close(
    session: Session, request: ApprovalRequest, state: str, reason: str, actor: Actor
) -> None:
    """Move a request to a final state and log it (the caller commits)."""
    request.state, request.state_reason, request.closed_at = state, reason, utcnow()
    session.add(request)
    domain = request_domain(session, request)
    record(
        session,
        actor,
        f"approval.{state}",
        f"approval/{request.uid}",
        domain.name,
        details={"subject": request.subject, "reason": reason},
    )


def refresh_state(
    session: Session, request: ApprovalRequest, policy_dir: Path, actor: Actor
) -> ApprovalRequest:
    """Expire or invalidate an open request whose time ran out or whose subject changed."""
    if request.state not in RequestState.OPEN:
        return request
    if request.state == RequestState.PENDING and utcnow() >= request.expires_at:
        close(session, request, RequestState.EXPIRED, "no decision before it expired", actor)
        return request
    resolver = resolver_for(request.kind)
    if resolver is None:
        # A process that forgot to register the kinds at start-up must not invalidate
        # every request it reads: fail loudly instead.
        raise RuntimeError(
            f"no resolver for approval subjects of kind {request.kind!r}: call "
            "governance.runtime.register_subject_kinds() when the process starts"
        )
    current = resolver(session, request, policy_dir)
    if current != request.subject_digest:
        reason = "the subject is gone" if current is None else "the subject changed"
        close(session, request, RequestState.INVALIDATED, reason, actor)
    return request


def get_request(session: Session, uid: str) -> ApprovalRequest:
    request = session.exec(select(ApprovalRequest).where(ApprovalRequest.uid == uid)).first()
    if request is None:
        raise NotFound("no such approval request", details={"uid": uid})
    return request


def decisions_of(session: Session, request: ApprovalRequest) -> list[ApprovalDecision]:
    return list(
        session.exec(
            select(ApprovalDecision)
            .where(ApprovalDecision.request_id == request.id)
            .order_by(ApprovalDecision.id)
        )
    )


def missing_roles(request: ApprovalRequest, decisions: list[ApprovalDecision]) -> list[str]:
    filled = {d.role for d in decisions if d.decision == "approve"}
    return [role for role in request.required_roles if role not in filled]


def roles_held(policy: PolicySet, principal: str, domain: str) -> set[str]:
    return {role for where, role in policy.role_bindings(principal) if where in (domain, "*")}


# --- decisions --------------------------------------------------------------------------------


def decision_digest(
    request: ApprovalRequest,
    reviewer: str,
    role: str,
    decision: str,
    decided_at: str,
    policy_hash: str,
    comment: str,
) -> str:
    """The canonical digest a decision's signature covers."""
    return hashlib.sha256(
        canonical(
            {
                "request": request.uid,
                "kind": request.kind,
                "subject": request.subject,
                "subject_digest": request.subject_digest,
                "reviewer": reviewer,
                "role": role,
                "decision": decision,
                "time": decided_at,
                "policy_hash": policy_hash,
                "comment_sha256": hashlib.sha256(comment.encode()).hexdigest(),
            }
        )
    ).hexdigest()


def decision_role(
    session: Session, request: ApprovalRequest, reviewer: str, role: str | None, policy: PolicySet
) -> str:
    """The role in which reviewer may decide this pending request now, or raise why not.

    Separation of duties, as `decide` enforces it and the console explains it: the requester (and
    for promotions the trainer) is excluded; one person fills one role; the role must be one the
    request still needs and the reviewer holds in the request's domain.
    """
    uid = request.uid
    domain = request_domain(session, request)
    if reviewer in request.excluded:
        what = "requested" if reviewer == request.requested_by else "trained the subject of"
        raise Forbidden(
            f"{reviewer} {what} this request and may not decide it",
            details={"uid": uid, "reviewer": reviewer},
            code="separation_of_duties",
        )
    decisions = decisions_of(session, request)
    if any(d.reviewer == reviewer for d in decisions):
        raise Conflict(
            f"{reviewer} has already decided this request; one person fills one role",
            details={"uid": uid},
            code="separation_of_duties",
        )
    open_roles = missing_roles(request, decisions)
    held = roles_held(policy, reviewer, domain.name)
    candidates = [r for r in open_roles if r in held]
    if role is not None:
        if role not in request.required_roles:
            raise InvalidInput(
                f"role {role!r} is not required by this request",
                details={"field": "role", "required": request.required_roles},
            )
        if role not in held:
            raise Forbidden(
                f"{reviewer} does not hold {role} in {domain.name}",
                details={"role": role, "domain": domain.name},
                code="separation_of_duties",
            )
        if role not in open_roles:
            raise Conflict(f"role {role} has already approved this request", details={"role": role})
        candidates = [role]
    if not candidates:
        raise Forbidden(
            f"{reviewer} holds none of the roles this request still needs in {domain.name}",
            details={"missing_roles": open_roles, "held": sorted(held)},
            code="separation_of_duties",
        )
    if len(candidates) > 1:
        raise InvalidInput(
            "you hold several roles this request needs: name one",
            details={"field": "role", "choices": candidates},
        )
    return candidates[0]


def decide(
    session: Session,
    uid: str,
    decision: str,
    comment: str,
    role: str | None,
    *,
    policy: PolicySet,
    policy_dir: Path,
    key: Ed25519PrivateKey,
    actor: Actor,
) -> ApprovalDecision:
    """Record one reviewer's signed decision, enforcing separation of duties."""
    reviewer = actor.principal
    request = get_request(session, uid)
    # Take the request's lock before reading anything that decides the outcome.
    bumped = session.execute(
        sa.update(ApprovalRequest)
        .where(ApprovalRequest.id == request.id, ApprovalRequest.state == RequestState.PENDING)
        .values(lock_version=ApprovalRequest.lock_version + 1)
    )
    session.refresh(request)
    if bumped.rowcount != 1:
        session.rollback()
        raise Conflict(
            f"the request is {request.state}, not pending",
            details={"uid": uid, "state": request.state},
            code="not_pending",
        )
    refresh_state(session, request, policy_dir, actor)
    if request.state != RequestState.PENDING:
        raise Conflict(
            f"the request is {request.state}: {request.state_reason}",
            details={"uid": uid, "state": request.state},
            code="not_pending",
        )
    domain = request_domain(session, request)
    chosen = decision_role(session, request, reviewer, role, policy)
    decisions = decisions_of(session, request)
    moment = utcnow()
    decided_at = format_time(moment)
    digest = decision_digest(request, reviewer, chosen, decision, decided_at, policy.hash, comment)
    row = ApprovalDecision(
        request_id=request.id,
        reviewer=reviewer,
        role=chosen,
        decision=decision,
        comment=comment,
        decided_at=moment,
        policy_hash=policy.hash,
        digest=digest,
        signature=key.sign(bytes.fromhex(digest)).hex(),
        key_id=key_id(key.public_key()),
    )
    session.add(row)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        session.rollback()
        raise Conflict("another decision in that role or by you came first") from exc
    row.audit_seq = record(
        session,
        actor,
        "approval.decide",
        f"approval/{request.uid}",
        domain.name,
        decision=decision,
        details={
            "role": chosen,
            "subject": request.subject,
            "subject_digest": request.subject_digest,
            "digest": digest,
            "comment_sha256": hashlib.sha256(comment.encode()).hexdigest(),
        },
    )
    decisions.append(row)
    if decision == "reject":
        close(session, request, RequestState.REJECTED, f"rejected by {reviewer} ({chosen})", actor)
    elif not missing_roles(request, decisions):
        close(session, request, RequestState.APPROVED, "every required role approved", actor)
    session.add(row)
    return row


def verify_decisions(
    session: Session, request: ApprovalRequest, public_key: Ed25519PublicKey
) -> list[str]:
    """Check every decision's digest and signature; return the problems (none: all good)."""
    problems = []
    for row in decisions_of(session, request):
        expected = decision_digest(
            request,
            row.reviewer,
            row.role,
            row.decision,
            format_time(row.decided_at),
            row.policy_hash,
            row.comment,
        )
        if expected != row.digest:
            problems.append(
                f"decision by {row.reviewer}: the stored fields do not match its digest"
            )
            continue
        try:
            public_key.verify(bytes.fromhex(row.signature), bytes.fromhex(row.digest))
        except (InvalidSignature, ValueError):
            problems.append(f"decision by {row.reviewer}: bad signature")
    return problems


# --- reading ----------------------------------------------------------------------------------


def inbox(
    session: Session, principal: str, policy: PolicySet, policy_dir: Path, actor: Actor
) -> list[ApprovalRequest]:
    """Pending requests that still need a role `principal` holds, in domains where they hold it."""
    waiting = []
    for request in session.exec(
        select(ApprovalRequest)
        .where(ApprovalRequest.state == RequestState.PENDING)
        .order_by(ApprovalRequest.requested_at)
    ).all():
        if principal in request.excluded:
            continue
        domain = request_domain(session, request)
        held = roles_held(policy, principal, domain.name)
        if not held & set(request.required_roles):
            continue
        decisions = decisions_of(session, request)
        if any(d.reviewer == principal for d in decisions):
            continue
        if not held & set(missing_roles(request, decisions)):
            continue
        refresh_state(session, request, policy_dir, actor)
        if request.state == RequestState.PENDING:
            waiting.append(request)
    return waiting


def request_in_state(
    session: Session,
    kind: str,
    subject: str,
    family: str,
    state: str,
    domain_id: int | None = None,
) -> ApprovalRequest | None:
    """The request of this kind for this subject and family (and domain, for a subject that
    each domain approves on its own) that is in `state`, if any."""
    statement = select(ApprovalRequest).where(
        ApprovalRequest.kind == kind,
        ApprovalRequest.subject == subject,
        ApprovalRequest.family == family,
        ApprovalRequest.state == state,
    )
    if domain_id is not None:
        statement = statement.where(ApprovalRequest.domain_id == domain_id)
    return session.exec(statement).first()


def approved_request(
    session: Session,
    kind: str,
    subject: str,
    family: str,
    policy_dir: Path,
    actor: Actor,
    domain_id: int | None = None,
) -> ApprovalRequest | None:
    """The approved request for this subject and family, if it still holds."""
    request = request_in_state(session, kind, subject, family, RequestState.APPROVED, domain_id)
    if request is None:
        return None
    refresh_state(session, request, policy_dir, actor)
    return request if request.state == RequestState.APPROVED else None


def request_read(session: Session, request: ApprovalRequest) -> dict[str, Any]:
    decisions = decisions_of(session, request)
    domain = request_domain(session, request)
    return {
        **request.model_dump(
            include={
                "uid",
                "kind",
                "subject",
                "subject_digest",
                "family",
                "state",
                "state_reason",
                "required_roles",
                "requested_by",
                "requested_at",
                "expires_at",
                "closed_at",
                "policy_hash",
            }
        ),
        "domain": domain.name,
        "missing_roles": missing_roles(request, decisions),
        "decisions": [d.model_dump(exclude={"id", "request_id"}) for d in decisions],
    }
