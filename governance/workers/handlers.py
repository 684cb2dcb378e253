"""What each kind of job does, with the runtime's parts: one function per kind.

A handler gets the runtime, a session, the job and a `progress(dict)` callback (which also
renews the lease), and returns the job's result: a small JSON document that names what was
made (a receipt, an evaluation, an export file), never raw data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from governance.audit.service import Actor
from governance.datasets.models import DatasetVersion
from governance.errors import NotFound
from governance.families.models import ModelVersion
from governance.flows import evaluation
from governance.flows.evidence import write_evidence_pack
from governance.flows.log_export import EntryFilter, iter_csv, iter_jsonl, write_log_bundle
from governance.jobs.models import Job, JobKind
from governance.jobs.service import export_file
from governance.pii import service as pii
from governance.pii.models import Verdict
from governance.policy_review import changes as policy_changes
from trainers.hashing import file_sha256

if TYPE_CHECKING:
    from governance.runtime import Runtime

Progress = Callable[[dict[str, Any]], None]
Handler = Callable[["Runtime", Session, Job, Actor, Progress], dict[str, Any]]


def job_actor(rt: Runtime, job: Job) -> Actor:
    """A job acts for whoever asked for it, under the policy in force when it runs."""
    return Actor(job.requested_by or "system", None, rt.authorizer.policy.hash)


def subject_row(session: Session, job: Job, table: Any, kind: str) -> Any:
    """The row a job's subject (`kind/uid`) names, or NotFound (it may have gone since)."""
    uid = (job.subject or "").removeprefix(f"{kind}/")
    row = session.exec(select(table).where(table.uid == uid)).first()
    if row is None:
        raise NotFound(f"no {kind.replace('-', ' ')} {uid}")
    return row


def scan(
    rt: Runtime, session: Session, job: Job, actor: Actor, progress: Progress
) -> dict[str, Any]:
    """Scan a dataset version for PII under its domain's rules; the result is the receipt."""
    version = subject_row(session, job, DatasetVersion, "dataset-version")
    rules = rt.rules(job.domain or "")
    total = version.record_count or 0
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress({"records": done, "total": total})

    progress({"records": 0, "total": total, "stage": "loading the scanner"})
    scanner = rt.scanner
    receipt = pii.scan_version(
        session,
        rt.keyring,
        rt.store,
        scanner,
        version,
        rules,
        actor=actor,
        progress=advance,
    )
    result: dict[str, Any] = {"receipt": pii.receipt_read(receipt, version, rules.hash)}
    if receipt.verdict == Verdict.ERROR:
        # The error receipt is kept (the version fails closed); the job is not a success.
        result[FAILED] = f"the scan failed: {receipt.error or 'the scanner stopped'}"
    return result


def evaluate(
    rt: Runtime, session: Session, job: Job, actor: Actor, progress: Progress
) -> dict[str, Any]:
    """Run the evaluation gate on a model version: held-out metrics, the PII probe."""
    version = subject_row(session, job, ModelVersion, "model-version")
    progress({"stage": "evaluating"})
    version = evaluation.evaluate(
        session,
        rt.keyring,
        rt.store,
        rt.scanner,
        rt.policy_dir,
        version,
        rt.backend,
        actor=actor,
        progress=progress,
        signing_key=rt.audit_log.signing_key,
    )
    return {
        "version": version.number,
        "status": version.status,
        "gate": (version.evaluation or {}).get("gate"),
    }


def export(
    rt: Runtime, session: Session, job: Job, actor: Actor, progress: Progress
) -> dict[str, Any]:
    """Export audit entries (CSV, JSON lines, or a bundle that verifies offline), or an
    evidence pack, to a file the requester downloads from the job
    (`GET /api/v1/jobs/{uid}/file`)."""
    target = export_file(rt.home, job.uid, job.params["format"])
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written under a hidden name with the same suffix (a bundle's suffix chooses its form).
    partial = target.with_name("." + target.name)
    fmt = job.params["format"]
    if fmt == "evidence":
        progress({"stage": "verifying the log and writing the evidence pack"})
        log = rt.audit_log
        index = write_evidence_pack(
            session, partial, log.signing_key, rt.authorizer.policy, job.params["period"],
            job.params.get("family"), tree=log.tree, origin=log.origin, witnesses=log.witnesses,
        )  # fmt: skip
        partial.chmod(0o600)
        partial.replace(target)
        return {
            "format": fmt,
            "period": job.params["period"],
            "files": len(index["items"]),
            "entries": index["audit_bundle"]["entries"],
            "bytes": target.stat().st_size,
            "sha256": file_sha256(target),
            "download": f"/api/v1/jobs/{job.uid}/file",
        }
    filters = EntryFilter.from_dict(job.params["filters"], frozenset(job.params["domains"]))
    if fmt == "bundle":
        progress({"stage": "verifying the log and writing the bundle"})
        entries = write_log_bundle(session, filters, partial, rt.audit_log)["entries"]
    else:
        render = iter_csv if fmt == "csv" else iter_jsonl
        entries = 0
        with partial.open("w", encoding="utf-8") as out:
            for line in render(session, filters):
                out.write(line)
                entries += 1
                if entries % 1000 == 0:
                    progress({"entries": entries})
        if fmt == "csv":
            entries -= 1  # the header line
    partial.chmod(0o600)
    partial.replace(target)
    progress({"entries": entries})
    return {
        "format": fmt,
        "entries": entries,
        "bytes": target.stat().st_size,
        "sha256": file_sha256(target),
        "download": f"/api/v1/jobs/{job.uid}/file",
    }


def policy_review(
    rt: Runtime, session: Session, job: Job, actor: Actor, progress: Progress
) -> dict[str, Any]:
    """The evidence of a proposed policy against the one in force: lint, the policy tests,
    the permission diff and the replay of recorded decisions; with `request`, the approval
    request of kind policy-change that carries it (only if lint and the tests pass)."""
    digest = job.params["policy_hash"]
    head = policy_changes.proposal_dir(rt.home, digest)
    base = policy_changes.version_dir(rt.home, job.params["base_policy"])
    progress({"stage": "linting, testing, diffing and replaying recorded decisions"})
    evidence = policy_changes.review(
        session,
        base,
        head,
        since=job.params.get("since"),
        domains=job.params.get("domains"),
    )
    replayed = evidence["replay"]
    result: dict[str, Any] = {
        "policy_hash": digest,
        "base_policy": evidence["base_policy"],
        "lint": {k: evidence["lint"][k] for k in ("errors", "warnings")},
        "tests": {k: evidence["tests"][k] for k in ("passed", "failed")},
        "diff": {k: evidence["diff"][k] for k in ("gained", "lost", "settings_changed")},
        "replay": replayed,
        "replay_markdown": evidence["replay_markdown"],
    }
    if not job.params.get("request"):
        return result
    if not policy_changes.passes(evidence):
        result[FAILED] = (
            f"the proposed policy fails {evidence['lint']['errors']} lint check(s) and "
            f"{evidence['tests']['failed']} policy test(s); no approval was requested"
        )
        result["problems"] = evidence["lint"]["problems"] + evidence["tests"]["failures"]
        return result
    request = policy_changes.open_change_request(
        session, rt.authorizer.policy, digest, evidence, actor
    )
    result["approval"] = request.uid
    result["approval_state"] = request.state
    result["required_roles"] = request.required_roles
    return result


# The key of a handler's result that names a failure it recorded itself (the runner takes it
# out and ends the job failed, keeping what the handler wrote).
FAILED = "job_failed"

HANDLERS: dict[str, Handler] = {
    JobKind.SCAN: scan,
    JobKind.EVALUATE: evaluate,
    JobKind.EXPORT: export,
    JobKind.POLICY_REVIEW: policy_review,
}
