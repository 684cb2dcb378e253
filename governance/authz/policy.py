"""Load a policy directory into a Casbin enforcer and name it by its content hash."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import casbin
from casbin.util import key_match

from governance.errors import GovernanceError

log = logging.getLogger(__name__)

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"

# Objects that belong to no data domain (principals, tokens, the policy itself) live here.
SYSTEM_DOMAIN = "system"


class PolicyError(GovernanceError):
    status = 500
    code = "policy_error"


def policy_hash(directory: str | Path) -> str:
    """Hash every file under a policy directory: relative path and content, in sorted order."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class Decision:
    """The outcome of one authorization question, with the rule that allowed it if any."""

    subject: str
    domain: str
    obj: str
    action: str
    allowed: bool
    rule: tuple[str, ...] | None
    policy_hash: str

    def as_dict(self) -> dict:
        return {
            "subject": self.subject,
            "domain": self.domain,
            "object": self.obj,
            "action": self.action,
            "allowed": self.allowed,
            "rule": list(self.rule) if self.rule else None,
            "policy_hash": self.policy_hash,
        }


@dataclass
class PolicySet:
    """One loaded, immutable version of the policy directory."""

    directory: Path
    hash: str
    enforcer: casbin.Enforcer
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, directory: str | Path) -> PolicySet:
        """Load model.conf and policy.csv from a directory."""
        root = Path(directory)
        for name in (MODEL_FILE, POLICY_FILE):
            if not (root / name).is_file():
                raise PolicyError(f"policy directory {root} has no {name}")
        try:
            enforcer = casbin.Enforcer(str(root / MODEL_FILE), str(root / POLICY_FILE))
        except Exception as exc:  # Casbin raises plain exceptions for syntax errors.
            raise PolicyError(f"cannot load policy from {root}: {exc}") from exc
        # A role binding in domain `*` holds in every domain (the admin's).
        enforcer.add_named_domain_matching_func("g", key_match)
        enforcer.build_role_links()
        return cls(directory=root, hash=policy_hash(root), enforcer=enforcer)

    def decide(self, subject: str, domain: str, obj: str, action: str) -> Decision:
        """Answer whether subject may perform action on obj in domain."""
        # Casbin's enforcer keeps per-call matcher state; serialize calls on one instance.
        with self.lock:
            allowed, explain = self.enforcer.enforce_ex(subject, domain, obj, action)
        rule = tuple(explain) if allowed and explain else None
        return Decision(subject, domain, obj, action, bool(allowed), rule, self.hash)

    def role_bindings(self, subject: str) -> list[tuple[str, str]]:
        """Return the (domain, role) pairs bound to a subject."""
        with self.lock:
            rows = self.enforcer.get_filtered_grouping_policy(0, subject)
        return sorted((row[2], row[1]) for row in rows)

    def domains_of(self, subject: str) -> set[str]:
        """Return the domains where a subject holds any role (`*` for every domain)."""
        return {domain for domain, _role in self.role_bindings(subject)}
