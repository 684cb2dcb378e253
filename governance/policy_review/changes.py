"""Policy changes reviewed like data: proposed files, their evidence, and the approval gate.

A proposed policy is uploaded whole (every file of the directory) and kept, owner-only, under
`GOVERNANCE_HOME/policy/proposals/<hash>/`, named by the same content hash the service
computes of its policy directory. A `policy-review` job computes the evidence reviewers judge:

- lint (errors and warnings) and the policy's own tests,
- the effective-permission diff against the policy in force,
- the replay of the recorded decisions of a window against it (`governance.authz.replay`),

and, when asked, opens an approval request of kind `policy-change` in the system domain,
bound to the hash. While `approvals.yaml` of the policy in force has a `policy-change` rule,
the authorizer refuses to put in force a policy whose hash has no approved request: on
`govern policy reload`, on the reload endpoint and when a process notices changed files.
A role named in the rule's `break_glass` may force it in an emergency; that reload is
audited as `policy.break-glass` and the review and approval request follow at once.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from governance.approvals import subjects
from governance.approvals.models import RequestState
from governance.approvals.rules import (
    ApprovalRule,
    ApprovalRulesError,
    parse_approval_rules,
)
from governance.authz.policy import PolicySet, policy_files, policy_hash
from governance.errors import InvalidInput, NotFound
from governance.policy_review.diff import diff_directories
from governance.policy_review.lint import lint
from governance.policy_review.policytest import run_policy_tests
from governance.policy_review.replay import replay_log

if TYPE_CHECKING:
    from governance.approvals.models import ApprovalRequest
    from governance.authz.service import Authorizer
    from governance.db import Database

log = logging.getLogger(__name__)

POLICY_CHANGE = "policy-change"
FAMILY = "policy"
# What a proposal may hold: plain relative paths of a few levels, no hidden parts.
PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}){0,3}$")
SUFFIXES = (".csv", ".conf", ".yaml", ".yml", ".md", ".txt", ".json")
MAX_FILES = 500
MAX_BYTES = 64 * 2**20
# Groups of changed decisions kept in an approval's evidence (the counts cover all of them).
EVIDENCE_GROUPS = 200


def subject_of(digest: str) -> str:
    return f"policy/{digest}"


def proposals_dir(home: Path) -> Path:
    return Path(home) / "policy" / "proposals"


def versions_dir(home: Path) -> Path:
    return Path(home) / "policy" / "versions"


def keep_version(home: Path, policy: PolicySet) -> Path | None:
    """Keep a copy of a policy put in force, named by its hash (the base later reviews and
    replays compare against). None if the files changed on disk since it was loaded."""
    root = versions_dir(home)
    final = root / policy.hash
    if (final / "policy.csv").is_file():
        return final
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = root / f".incoming-{uuid.uuid4().hex}"
    try:
        shutil.copytree(
            policy.directory, scratch, ignore=shutil.ignore_patterns(".*", "__pycache__")
        )
        if policy_hash(scratch) != policy.hash:
            return None
        try:
            scratch.rename(final)
        except OSError:
            if not (final / "policy.csv").is_file():  # another process won the race
                raise
        return final
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def keep_version_quietly(home: Path, policy: PolicySet) -> None:
    """keep_version where there is an instance home to keep it in (a worker host may have
    none, or a read-only one); a failure is logged, never raised into a reload."""
    if not (Path(home) / "keys").is_dir():
        return
    try:
        keep_version(home, policy)
    except OSError as exc:
        log.warning("could not keep a copy of policy %s: %s", policy.hash[:16], exc)


def version_dir(home: Path, digest: str) -> Path:
    """The kept copy of a policy that was in force, or NotFound."""
    found = versions_dir(home) / digest
    if not re.fullmatch(r"[0-9a-f]{64}", digest) or not (found / "policy.csv").is_file():
        raise NotFound(
            f"the policy {digest[:16]} that was in force was not kept; reload it once to keep it",
            details={"policy_hash": digest},
        )
    return found


def proposal_dir(home: Path, digest: str) -> Path:
    """The stored proposal with this hash, or NotFound."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise NotFound(f"no proposed policy {digest[:70]!r}")
    found = proposals_dir(home) / digest
    if not (found / "policy.csv").is_file():
        raise NotFound(f"no proposed policy {digest[:16]}", details={"policy_hash": digest})
    return found


def check_files(files: Mapping[str, str]) -> None:
    """Refuse (422, naming the file) what a policy directory cannot hold."""
    if not files:
        raise InvalidInput(
            "no files: send every file of the policy directory", details=[{"field": "files"}]
        )
    if len(files) > MAX_FILES:
        raise InvalidInput(f"more than {MAX_FILES} files", details=[{"field": "files"}])
    total = 0
    for name, text in files.items():
        where = [{"field": f"files.{name[:120]}"}]
        if not PATH.match(name) or ".." in name.split("/"):
            raise InvalidInput(
                f"{name[:120]!r} is not a plain relative path (letters, digits, . _ -; at most "
                "four levels; no hidden or parent parts)",
                details=where,
            )
        if not name.endswith(SUFFIXES):
            raise InvalidInput(
                f"{name}: a policy directory holds only {', '.join(SUFFIXES)} files", details=where
            )
        if "\x00" in text:
            raise InvalidInput(f"{name} holds a NUL character", details=where)
        total += len(text.encode())
    if total > MAX_BYTES:
        raise InvalidInput(
            f"the files hold more than {MAX_BYTES // 2**20} MiB", details=[{"field": "files"}]
        )
    for required in ("model.conf", "policy.csv"):
        if required not in files:
            raise InvalidInput(
                f"the proposal has no {required}", details=[{"field": f"files.{required}"}]
            )


def store_proposal(home: Path, files: Mapping[str, str]) -> str:
    """Write a proposed policy directory under the home (owner-only); return its hash."""
    check_files(files)
    root = proposals_dir(home)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = root / f".incoming-{uuid.uuid4().hex}"
    try:
        for name, text in files.items():
            target = scratch / name
            try:
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
                raise InvalidInput(
                    f"{name} is both a file and a folder in the proposal",
                    details=[{"field": f"files.{name}"}],
                ) from exc
            target.chmod(0o600)
        digest = policy_hash(scratch)
        final = root / digest
        if final.exists():
            shutil.rmtree(scratch)
        else:
            scratch.rename(final)
        return digest
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def files_of(directory: Path) -> dict[str, str]:
    """Every file of a policy directory as the upload sends it (what policy_hash covers)."""
    return {
        relative: path.read_text(encoding="utf-8") for relative, path in policy_files(directory)
    }


def review(
    session: Session,
    base_dir: Path,
    head_dir: Path,
    *,
    since: str | None,
    domains: list[str] | None = None,
) -> dict[str, Any]:
    """The evidence of a proposed policy against the one in force."""
    base, head = PolicySet.load(base_dir), PolicySet.load(head_dir)
    problems = lint(head_dir)
    errors = [str(p) for p in problems if p.severity == "error"]
    warnings = [str(p) for p in problems if p.severity != "error"]
    results = run_policy_tests(head_dir, head)
    failed = [str(r) for r in results if not r.passed]
    diff = diff_directories(base_dir, head_dir, "in force", "proposed")
    report = replay_log(session.connection(), base, head, since=since, domains=domains)
    replayed = report.as_dict()
    markdown = report.as_markdown()
    groups = replayed.get("groups", [])
    replayed["groups"] = groups[:EVIDENCE_GROUPS]
    replayed["groups_shown"] = len(replayed["groups"])
    replayed["groups_total"] = len(groups)
    return {
        "policy_hash": head.hash,
        "base_policy": base.hash,
        "lint": {
            "errors": len(errors),
            "warnings": len(warnings),
            "problems": (errors + warnings)[:50],
        },
        "tests": {
            "passed": len(results) - len(failed),
            "failed": len(failed),
            "failures": failed[:50],
        },
        "diff": {
            "gained": len(diff.gained),
            "lost": len(diff.lost),
            "settings_changed": sum(len(v) for v in diff.settings.values()),
            "markdown": diff.as_markdown(),
        },
        "replay": replayed,
        "replay_markdown": markdown,
    }


def passes(evidence: dict[str, Any]) -> bool:
    return evidence["lint"]["errors"] == 0 and evidence["tests"]["failed"] == 0


def open_change_request(
    session: Session, in_force: PolicySet, digest: str, evidence: dict[str, Any], actor
) -> ApprovalRequest:
    """Open the approval request of a reviewed proposal (system domain, bound to its hash),
    under the approval rules of the policy in force."""
    from governance.approvals import service as approvals

    rules = parse_approval_rules(in_force.approvals_text or "")
    if rules.policy_change() is None:
        raise InvalidInput(
            "the approval rules in force require no approval for policy changes "
            "(approvals.yaml has no policy-change rule)"
        )
    summary = {
        "policy_hash": digest,
        "base_policy": evidence["base_policy"],
        "evidence": evidence,
    }
    return approvals.open_request(
        session,
        approvals.system_domain(),
        POLICY_CHANGE,
        subject_of(digest),
        digest,
        FAMILY,
        summary,
        rules,
        actor=actor,
    )


def approved_change(session: Session, digest: str) -> ApprovalRequest | None:
    """The approved request for this exact policy, if any."""
    from governance.approvals.service import request_in_state

    return request_in_state(
        session, POLICY_CHANGE, subject_of(digest), FAMILY, RequestState.APPROVED
    )


def change_rule(policy: PolicySet) -> ApprovalRule | None:
    """The policy-change rule of the policy in force, read from the approvals.yaml it was
    loaded with (the files on disk may already hold a proposal that drops the rule)."""
    if policy.approvals_text is None:
        return None
    return parse_approval_rules(policy.approvals_text).policy_change()


def approval_needed(policy: PolicySet) -> bool:
    """Whether the approval rules of the policy in force gate policy changes."""
    try:
        return change_rule(policy) is not None
    except ApprovalRulesError:
        return True  # Unreadable rules fail closed.


def break_glass_roles(policy: PolicySet) -> tuple[str, ...]:
    try:
        rule = change_rule(policy)
    except ApprovalRulesError:
        return ()
    return rule.break_glass if rule else ()


def approval_gate(database: Database, authorizer: Authorizer) -> Callable[[PolicySet], None]:
    """The check an authorizer runs before it puts a new policy in force."""
    from governance.authz.service import PolicyUnapproved

    def gate(fresh: PolicySet) -> None:
        # The rules of the policy in force decide: a proposal cannot lift its own gate.
        if not approval_needed(authorizer.policy):
            return
        with Session(database.engine) as session:
            if approved_change(session, fresh.hash) is not None:
                return
        raise PolicyUnapproved(
            f"policy {fresh.hash[:16]} has no approved policy-change request; the old one "
            "stays. Request one: govern policy request-change --dir DIRECTORY",
            details={
                "policy_hash": fresh.hash,
                "problems": [f"policy {fresh.hash} has no approved policy-change request"],
                "request_with": "govern policy request-change --dir DIRECTORY "
                "(POST /api/v1/policy/changes)",
            },
        )

    return gate


def _resolve(session: Session, request: ApprovalRequest, policy_dir: Path) -> str | None:
    # The subject is named by its content hash: it cannot change under the request.
    return request.subject_digest


def register() -> None:
    subjects.register(POLICY_CHANGE, _resolve)
