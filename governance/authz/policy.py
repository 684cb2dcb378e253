"""Load a policy directory, compile it for decisions, and name it by its content hash.

Decisions come from `CompiledPolicy` (indexes built at load: a few dictionary lookups a
decision at any policy size); pycasbin's Enforcer, which evaluates the model's matcher against
every rule, is built only on demand (`PolicySet.enforcer`), for tools and for the
differential test that holds the two to the same answers.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import casbin

from governance.authz.compiled import CompiledPolicy, key_match
from governance.authz.files import POLICY_FILE, read_rules
from governance.errors import GovernanceError

log = logging.getLogger(__name__)

MODEL_FILE = "model.conf"

# Objects that belong to no data domain (principals, tokens, the policy itself) live here.
SYSTEM_DOMAIN = "system"
# Decisions about objects that do not exist (a dataset id, a family or a job nobody has) are
# logged under this domain: no data domain owns them, so only a caller granted the action in
# every domain ("*") reads those entries of the audit log.
UNSCOPED_DOMAIN = "unknown"


class PolicyError(GovernanceError):
    status = 500
    code = "policy_error"


def policy_files(directory: str | Path) -> Iterator[tuple[str, Path]]:
    """The files a policy directory is made of, as (relative path, path), in sorted order:
    every file but hidden ones and Python caches."""
    root = Path(directory)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        yield relative.as_posix(), path


def policy_hash(directory: str | Path) -> str:
    """Hash every file under a policy directory: relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for relative, path in policy_files(directory):
        digest.update(relative.encode() + b"\0")
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


# The model this service compiles (RBAC with domains, keyMatch on domains and objects, role
# bindings whose domain may be a pattern). A model.conf that says otherwise is refused rather
# than silently answered with other semantics.
MATCHER = (
    "g(r.sub, p.sub, r.dom) && keyMatch(r.dom, p.dom) && keyMatch(r.obj, p.obj) "
    '&& (r.act == p.act || p.act == "*")'
)


def _model_matcher(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("m") and "=" in text and text.split("=", 1)[0].strip() == "m":
            return " ".join(text.split("=", 1)[1].split())
    return ""


@dataclass
class PolicySet:
    """One loaded, immutable version of the policy directory."""

    directory: Path
    hash: str
    compiled: CompiledPolicy
    groupings: list[tuple[str, str, str]]
    # approvals.yaml as it was when this version was loaded (None if it had none): the rules
    # that gate the *next* policy change are the ones in force, never those on disk, which
    # may already hold the proposal.
    approvals_text: str | None = None
    _enforcer: casbin.Enforcer | None = field(default=None, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, directory: str | Path) -> PolicySet:
        """Read model.conf and policy.csv from a directory and compile them."""
        root = Path(directory)
        for name in (MODEL_FILE, POLICY_FILE):
            if not (root / name).is_file():
                raise PolicyError(f"policy directory {root} has no {name}")
        matcher = _model_matcher(root / MODEL_FILE)
        if matcher != MATCHER:
            raise PolicyError(
                f"{root / MODEL_FILE}: the matcher must be `{MATCHER}` (RBAC with domains, as "
                f"the service compiles it); found `{matcher}`"
            )
        try:
            lines, problems = read_rules(root / POLICY_FILE)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise PolicyError(f"cannot read {root / POLICY_FILE}: {exc}") from exc
        if problems:
            raise PolicyError(f"cannot load policy from {root}: {problems[0]}")
        rules = [tuple(r.fields) for r in lines if r.ptype == "p"]
        groupings = [tuple(r.fields) for r in lines if r.ptype == "g"]
        approvals = root / "approvals.yaml"
        return cls(
            directory=root,
            hash=policy_hash(root),
            compiled=CompiledPolicy.build(rules, groupings),
            groupings=groupings,
            approvals_text=approvals.read_text() if approvals.is_file() else None,
        )

    @property
    def rules(self) -> list[tuple[str, str, str, str]]:
        """The p lines in file order."""
        return self.compiled.rules

    @property
    def enforcer(self) -> casbin.Enforcer:
        """pycasbin's Enforcer over the same files, built on first use (slow at scale)."""
        with self.lock:
            if self._enforcer is None:
                try:
                    enforcer = casbin.Enforcer(
                        str(self.directory / MODEL_FILE), str(self.directory / POLICY_FILE)
                    )
                except Exception as exc:  # Casbin raises plain exceptions for syntax errors.
                    raise PolicyError(f"cannot load policy from {self.directory}: {exc}") from exc
                # A role binding in domain `*` holds in every domain (the admin's).
                enforcer.add_named_domain_matching_func("g", key_match)
                enforcer.build_role_links()
                self._enforcer = enforcer
            return self._enforcer

    def decide(self, subject: str, domain: str, obj: str, action: str) -> Decision:
        """Answer whether subject may perform action on obj in domain."""
        rule = self.compiled.allowed(subject, domain, obj, action)
        return Decision(subject, domain, obj, action, rule is not None, rule, self.hash)

    def role_bindings(self, subject: str) -> list[tuple[str, str]]:
        """Return the (domain, role) pairs bound to a subject."""
        return sorted((domain, role) for role, domain in self.compiled.bindings.get(subject, ()))

    def domains_of(self, subject: str) -> set[str]:
        """Return the domains where a subject holds any role (`*` for every domain)."""
        return {domain for domain, _role in self.role_bindings(subject)}
