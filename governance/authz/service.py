"""The authorizer: the policy in force, validated before it is swapped in.

Pure: no Flask, no request. The checks a request makes against it (and their audit entries)
are the request guard's, in `governance.web.guard`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from governance.authz.policy import Decision, PolicySet, policy_hash
from governance.errors import GovernanceError, InvalidInput

log = logging.getLogger(__name__)


class PolicyRefused(InvalidInput):
    code = "policy_refused"


class PolicyUnapproved(PolicyRefused):
    """A valid policy that no completed policy-change approval covers."""

    status = 409
    code = "policy_unapproved"


class Authorizer:
    """Holds the PolicySet in force and swaps it whole when the policy is reloaded.

    A reload (asked for, or noticed when the files' hash changes) puts the new policy in force
    only if it lints without errors and passes its tests; otherwise the old one stays and the
    refusal is remembered, so a broken file is reported once, not on every request.
    """

    def __init__(
        self,
        directory: str | Path,
        check_seconds: float = 2.0,
        *,
        validate: Callable[[Path], PolicySet],
    ) -> None:
        self.directory = Path(directory)
        # Loads a directory and refuses it (PolicyRefused) if it does not lint or pass its own
        # tests: governance.policy_review.validate.validate_policy, given by the builder.
        self.validate = validate
        self._policy = PolicySet.load(self.directory)
        self._swap_lock = threading.Lock()
        self.check_seconds = check_seconds
        self._checked_at = time.monotonic()
        # The hash of the files last refused, and why.
        self.refused: tuple[str, list[str]] | None = None
        # The policy hash this process last recorded as loaded in the audit log.
        self.logged_hash: str | None = None
        # Run on a valid new policy before it is put in force; raises PolicyUnapproved when no
        # approval covers it (set by the runtime: `governance.policy_review.changes.approval_gate`).
        self.gate: Callable[[PolicySet], None] | None = None
        # Called with each policy put in force (the runtime keeps a copy of its files).
        self.on_loaded: Callable[[PolicySet], object] | None = None

    @property
    def policy(self) -> PolicySet:
        return self._policy

    def reload(self, *, break_glass: bool = False) -> PolicySet:
        """Validate the directory again and put it in force; on any problem the old one stays.

        A policy other than the one in force must also pass the gate (an approved
        policy-change request), unless `break_glass` (the caller checked the right to it).
        """
        with self._swap_lock:
            try:
                fresh = self.validate(self.directory)
                if self.gate is not None and not break_glass and fresh.hash != self._policy.hash:
                    self.gate(fresh)
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
            if self.on_loaded is not None:
                self.on_loaded(fresh)
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
