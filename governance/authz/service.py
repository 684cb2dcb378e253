"""The application's authorizer: the policy in force, and the checks views make against it."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from flask import Flask, current_app, g

from governance.accounts.models import Principal
from governance.audit.service import Actor, AuditEvent
from governance.authz.policy import Decision, PolicySet, policy_hash
from governance.db import get_session
from governance.domains.models import Domain
from governance.domains.service import list_domains
from governance.errors import Forbidden, GovernanceError, InvalidInput, Unauthenticated

log = logging.getLogger(__name__)

EXTENSION_KEY = "governance.authz"


class PolicyRefused(InvalidInput):
    code = "policy_refused"


def validate_policy(directory: str | Path) -> PolicySet:
    """Load a policy directory and refuse it if lint finds an error or a policy test fails."""
    from governance.authz.lint import lint
    from governance.authz.policytest import run_policy_tests

    policy = PolicySet.load(directory)
    problems = [str(p) for p in lint(directory) if p.severity == "error"]
    problems += [str(r) for r in run_policy_tests(directory, policy) if not r.passed]
    if problems:
        raise PolicyRefused(
            f"policy {policy.hash[:16]} refused: {len(problems)} problem(s); the old one stays",
            details={"policy_hash": policy.hash, "problems": problems[:50]},
        )
    return policy


class Authorizer:
    """Holds the PolicySet in force and swaps it whole when the policy is reloaded.

    A reload (asked for, or noticed when the files' hash changes) puts the new policy in force
    only if it lints without errors and passes its tests; otherwise the old one stays and the
    refusal is remembered, so a broken file is reported once, not on every request.
    """

    def __init__(self, directory: str | Path, check_seconds: float = 2.0) -> None:
        self.directory = Path(directory)
        self._policy = PolicySet.load(self.directory)
        self._swap_lock = threading.Lock()
        self.check_seconds = check_seconds
        self._checked_at = time.monotonic()
        # The hash of the files last refused, and why.
        self.refused: tuple[str, list[str]] | None = None
        # The policy hash this process last recorded as loaded in the audit log.
        self.logged_hash: str | None = None

    @property
    def policy(self) -> PolicySet:
        return self._policy

    def reload(self) -> PolicySet:
        """Validate the directory again and put it in force; on any problem the old one stays."""
        with self._swap_lock:
            try:
                fresh = validate_policy(self.directory)
            except PolicyRefused as exc:
                self.refused = (exc.details["policy_hash"], exc.details["problems"])
                log.error("%s", exc.message)
                raise
            except GovernanceError as exc:
                self.refused = (policy_hash(self.directory), [exc.message])
                log.error("policy refused: %s", exc.message)
                raise PolicyRefused(
                    f"policy refused: {exc.message}; the old one stays",
                    details={"problems": [exc.message]},
                ) from exc
            self._policy, self.refused = fresh, None
            return fresh

    def changed_on_disk(self) -> bool:
        """Whether the files differ from the policy in force (checked every few seconds)."""
        now = time.monotonic()
        if now - self._checked_at < self.check_seconds:
            return False
        self._checked_at = now
        current = policy_hash(self.directory)
        if current == self._policy.hash:
            self.refused = None  # The files are back to the version in force.
            return False
        return not (self.refused and self.refused[0] == current)

    def decide(self, subject: str, domain: str, obj: str, action: str) -> Decision:
        """Answer one authorization question against the policy in force."""
        return self._policy.decide(subject, domain, obj, action)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = self


def get_authorizer(app: Flask | None = None) -> Authorizer:
    """Return the Authorizer of the given or current app."""
    return (app or current_app).extensions[EXTENSION_KEY]


def current_principal() -> Principal:
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


def audit_log():
    """Return the AuditLog of the current app."""
    from governance.audit.views import get_audit_log

    return get_audit_log()


def log_event(
    action: str,
    obj: str,
    domain: str | None,
    decision: str,
    details: dict | None = None,
    *,
    principal: str | None = None,
) -> int:
    """Append an event of the current request to the audit log; return its seq once durable."""
    return audit_log().append(
        AuditEvent(
            principal=principal or current_principal().name,
            action=action,
            object=obj,
            domain=domain,
            decision=decision,
            policy_hash=get_authorizer().policy.hash,
            request_id=g.get("request_id"),
            details=details or {},
        )
    )


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


def check(action: str, obj: str, domain: str, details: dict | None = None) -> Decision:
    """Decide for the current principal and log the decision durably, without raising."""
    principal = current_principal()
    decision = get_authorizer().decide(principal.name, domain, obj, action)
    audit_log().append(decision_event(decision, details))
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
