"""What each kind of job does, with the runtime's parts: one function per kind.

A handler gets the runtime, a session, the job and a `progress(dict)` callback (which also
renews the lease), and returns the job's result: a small JSON document that names what was
made (a receipt, an evaluation, an export file), never raw data.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from governance.audit.service import Actor
from governance.datasets.models import DatasetShard, DatasetVersion
from governance.errors import NotFound
from governance.families.models import ModelVersion
from governance.flows import evaluation
from governance.flows.evidence import write_evidence_pack
from governance.flows.log_export import EntryFilter, iter_csv, iter_jsonl, write_log_bundle
from governance.jobs import service as jobs
from governance.jobs.models import Job, JobKind, JobState
from governance.jobs.service import export_file
from governance.pii import scanning
from governance.pii import service as pii
from governance.pii.models import ScanReceipt, ScanRun, ScanShardResult, Verdict
from governance.policy_review import changes as policy_changes
from governance.workers.execution import FAILED, Handler, Progress, run_job, worker_name
from trainers.hashing import file_sha256

if TYPE_CHECKING:
    from governance.runtime import Runtime


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
    """Scan a dataset version for PII under its domain's rules: queue one `scan-shard` job per
    shard (any runner or Celery worker takes them), scan shards here too while waiting, then
    reduce their outcomes into the receipt. A later attempt of this job (its runner died)
    carries on with the same run: shards already scanned are not scanned again."""
    version = subject_row(session, job, DatasetVersion, "dataset-version")
    rules = rt.rules(job.domain or "")
    progress({"records": 0, "total": version.record_count, "stage": "loading the scanner"})
    run = session.exec(select(ScanRun).where(ScanRun.job_uid == job.uid)).first()
    if run is None:
        # No reference to the scanner is kept here: a runner reloads it now and then (its
        # memory grows with what it scans), and a scan may outlast a load.
        run, _key = scanning.new_run(
            session, rt.keyring, rt.scanner, version, rules, actor=actor, job_uid=job.uid
        )
        session.add(run)
        session.flush()
        for ordinal in range(run.shards):
            jobs.enqueue(
                session,
                Job(
                    uid=uuid.uuid4().hex,
                    kind=JobKind.SCAN_SHARD,
                    subject=shard_subject(run.uid, ordinal),
                    domain=job.domain,
                    requested_by=job.requested_by,
                    params={"object": "scan", "run": run.uid, "shard": ordinal},
                    state=JobState.QUEUED,
                    max_attempts=SHARD_ATTEMPTS,
                ),
                rt.job_executor,
            )
    elif run.receipt_id is not None:  # reduced by an earlier attempt that died after
        return scan_result(session.get_one(ScanReceipt, run.receipt_id), version, rules)
    progress({**counts(shard_progress(session, run, version)), "stage": "scanning"})
    while True:
        state = shard_progress(session, run, version)
        if state["failed"]:
            failed = state["failed"][0]
            receipt = scanning.error_receipt(
                session, version, run.rules_hash, run.scanner,
                f"shard {failed['shard']} failed: {failed['error']}", actor=actor, run=run,
            )  # fmt: skip
            return scan_result(receipt, version, rules)
        if state["shards"] == run.shards:
            break
        # Scan a shard of this scan here rather than only wait (one runner is enough).
        if not scan_a_shard(rt, run):
            progress(counts(state))
            time.sleep(WAIT_SECONDS)
    progress({**counts(state), "stage": "reducing"})
    view_key = scanning.run_view_key(session, rt.keyring, run)
    receipt = scanning.reduce(session, run, version, rules, view_key, actor=actor)
    result = scan_result(receipt, version, rules)
    by_worker = Counter(w["worker"] for w in state["workers"])
    result["shards"] = {
        "count": run.shards,
        "by_worker": dict(sorted(by_worker.items())),
        "retried": [w["shard"] for w in state["workers"] if w["attempts"] > 1],
        "seconds": round(sum(w["seconds"] for w in state["workers"]), 3),
    }
    return result


def counts(state: dict[str, Any]) -> dict[str, Any]:
    """What a scan's progress shows: shards and records, not the per-shard detail."""
    return {k: state[k] for k in ("shards", "of", "running", "records", "total")}


SHARD_ATTEMPTS = 3
WAIT_SECONDS = 0.25


def shard_subject(run_uid: str, ordinal: int) -> str:
    return f"scan/{run_uid}/shard/{ordinal}"


def scan_result(receipt: ScanReceipt, version: DatasetVersion, rules) -> dict[str, Any]:
    result: dict[str, Any] = {"receipt": pii.receipt_read(receipt, version, rules.hash)}
    if receipt.verdict == Verdict.ERROR:
        # The error receipt is kept (the version fails closed); the job is not a success.
        result[FAILED] = f"the scan failed: {receipt.error or 'the scanner stopped'}"
    return result


def shard_progress(session: Session, run: ScanRun, version: DatasetVersion) -> dict[str, Any]:
    """Where a scan's shards stand: how many are done, records scanned (in finished shards
    and as running shards last reported), and any shard that failed for good."""
    session.expire_all()
    shard_jobs = session.exec(
        select(Job).where(
            Job.kind == JobKind.SCAN_SHARD,
            col(Job.subject).startswith(f"scan/{run.uid}/shard/"),
        )
    ).all()
    done = {
        row.ordinal: row
        for row in session.exec(select(ScanShardResult).where(ScanShardResult.run_id == run.id))
    }
    records = sum(row.records for row in done.values())
    failed, running, workers = [], 0, []
    for shard_job in sorted(shard_jobs, key=lambda j: j.params.get("shard", 0)):
        ordinal = shard_job.params.get("shard")
        if ordinal in done:
            row = done[ordinal]
            workers.append(
                {"shard": ordinal, "job": shard_job.uid, "worker": row.worker,
                 "attempts": shard_job.attempt, "seconds": row.seconds}
            )  # fmt: skip
        elif shard_job.state == JobState.FAILED:
            failed.append({"shard": ordinal, "job": shard_job.uid, "error": shard_job.error})
        elif shard_job.state == JobState.RUNNING:
            running += 1
            records += int((shard_job.progress or {}).get("records", 0))
    return {
        "shards": len(done),
        "of": run.shards,
        "running": running,
        "records": records,
        "total": version.record_count,
        "failed": failed,
        "workers": workers,
    }


def scan_a_shard(rt: Runtime, run: ScanRun) -> bool:
    """Claim a queued shard of this run (putting back any whose holder died) and scan it in
    this process; False if none was waiting."""
    lease = int(rt.settings["JOB_LEASE_SECONDS"])
    with rt.database.session_scope() as session:
        jobs.requeue_lapsed(session, (JobKind.SCAN_SHARD,))
        waiting = session.exec(
            select(Job.uid)
            .where(
                Job.kind == JobKind.SCAN_SHARD,
                Job.state == JobState.QUEUED,
                col(Job.subject).startswith(f"scan/{run.uid}/shard/"),
            )
            .order_by(col(Job.id))
        ).all()
        for uid in waiting:
            shard_job = jobs.claim(session, worker_name(), (JobKind.SCAN_SHARD,), lease, uid=uid)
            if shard_job is not None:
                break
        else:
            return False
    run_job(rt, shard_job, HANDLERS, lease)
    return True


def scan_shard(
    rt: Runtime, session: Session, job: Job, actor: Actor, progress: Progress
) -> dict[str, Any]:
    """Scan one shard of a scan run; its outcome waits for the scan's `scan` job to reduce."""
    run = session.exec(select(ScanRun).where(ScanRun.uid == job.params["run"])).first()
    if run is None:
        raise NotFound(f"no scan run {job.params['run']}")
    version = session.get_one(DatasetVersion, run.version_id)
    shard = session.exec(
        select(DatasetShard).where(
            DatasetShard.version_id == version.id, DatasetShard.ordinal == job.params["shard"]
        )
    ).one()
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress({"records": done, "of": shard.record_count})

    progress({"records": 0, "of": shard.record_count, "stage": "loading the scanner"})
    view_key = scanning.run_view_key(session, rt.keyring, run)
    outcome = scanning.scan_shard(
        session, rt.keyring, rt.store, rt.scanner, run, version, shard, rt.rules(job.domain or ""),
        view_key, progress=advance,
    )  # fmt: skip
    stored = scanning.store_outcome(session, rt.store, run, outcome, view_key, worker=worker_name())
    return {
        "shard": shard.ordinal,
        "records": outcome.records,
        "sanitized_records": outcome.sanitized_records,
        "seconds": outcome.seconds,
        "stored": stored,
    }


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


HANDLERS: dict[str, Handler] = {
    JobKind.SCAN: scan,
    JobKind.SCAN_SHARD: scan_shard,
    JobKind.EVALUATE: evaluate,
    JobKind.EXPORT: export,
    JobKind.POLICY_REVIEW: policy_review,
}
