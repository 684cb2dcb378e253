"""Training jobs on the control plane: claims under leases, bundles, results, the gate.

A worker claims a job with its own principal token and receives a job-scoped token for that
attempt. With it, and only it, the worker downloads the bundle (the sanitized records, never
raw data, keys or credentials), sends heartbeats that extend the lease, and uploads the
result. A lease that lapses (a worker killed with kill -9) puts the job back in the queue as
a new attempt; the old attempt's token stops working, so a job completes exactly once.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from governance.audit.service import Actor, record
from governance.db import on_commit, on_rollback
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict, InvalidInput, Unauthenticated
from governance.families import canaries
from governance.families.models import (
    MIN_HELD_OUT_RECORDS,
    BaseModelRecord,
    ModelFamily,
    ModelVersion,
    VersionState,
)
from governance.jobs import service as lease
from governance.jobs.models import Job, JobKind, JobState
from governance.pii.models import ScanReceipt
from governance.pii.service import iter_sanitized
from governance.storage import BlobStore

LEASE_SECONDS = 60
TOKEN_PREFIX = "job_"  # noqa: S105 (a prefix, not a secret)
RESULT_MAX_BYTES = 2 * 1024**3


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def fail_version(session: Session, job: Job, error: str) -> None:
    """A training job failed for good: so did its model version."""
    version = session.get(ModelVersion, job.version_id)
    version.status, version.status_reason = VersionState.FAILED, error[:500]
    session.add(version)


def claim(
    session: Session,
    worker: str,
    *,
    actor: Actor,
    lease_seconds: int = LEASE_SECONDS,
    job_uid: str | None = None,
) -> tuple[Job, str] | None:
    """Claim a queued training job (or that one) for this worker, with a job-scoped token."""
    tokens: dict[str, str] = {}

    def with_token(uid: str) -> dict[str, Any]:
        tokens[uid] = f"{TOKEN_PREFIX}{uid}.{secrets.token_urlsafe(32)}"
        return {"token_hash": token_hash(tokens[uid])}

    def audited(session: Session, job: Job) -> None:
        version = session.get(ModelVersion, job.version_id)
        family = session.get(ModelFamily, version.family_id)
        record(
            session,
            actor,
            "job.claim",
            f"model/{family.name}",
            session.get(Domain, family.domain_id).name,
            details={"job": job.uid, "attempt": job.attempt, "worker": worker},
        )

    job = lease.claim(
        session,
        worker,
        (JobKind.TRAIN,),
        lease_seconds,
        uid=job_uid,
        extra=with_token,
        then=audited,
        on_final=fail_version,
    )
    return None if job is None else (job, tokens[job.uid])


def job_for_token(session: Session, uid: str, token: str) -> Job:
    """The running job this token belongs to, for its current attempt only."""
    job = session.exec(select(Job).where(Job.uid == uid)).first()
    if (
        job is None
        or not token.startswith(f"{TOKEN_PREFIX}{uid}.")
        or job.token_hash is None
        or not secrets.compare_digest(job.token_hash, token_hash(token))
    ):
        raise Unauthenticated("this job token is not valid (the job may have moved on)")
    if job.state != JobState.RUNNING:
        raise Conflict(f"job {uid} is {job.state}", details={"state": job.state})
    return job


def heartbeat(
    session: Session, job: Job, progress: dict[str, Any], lease_seconds: int = LEASE_SECONDS
) -> Job:
    """Extend the lease and keep the latest progress."""
    lease.renew(session, job, progress, lease_seconds)
    session.refresh(job)
    return job


def split(
    records: list[dict[str, Any]], fraction: float, least: int = MIN_HELD_OUT_RECORDS
) -> tuple[list, list]:
    """Hold out a stable fraction of records, chosen by record hash (not by position): a
    record lands on the same side whatever else the data holds. Where chance leaves fewer
    than `least` held out (small data), the training records with the lowest hashes join them
    until there are, as long as more than half stays for training."""
    scored = []
    for rec in records:
        digest = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).digest()
        scored.append((int.from_bytes(digest[:4], "big") / 2**32, rec))
    held = [rec for score, rec in scored if score < fraction]
    rest = sorted(((s, i) for i, (s, _r) in enumerate(scored) if s >= fraction))
    moved: set[int] = set()
    for _score, index in rest:
        if len(held) >= least or len(records) - len(held) - 1 < len(records) / 2:
            break
        held.append(scored[index][1])
        moved.add(index)
    train = [rec for i, (score, rec) in enumerate(scored) if score >= fraction and i not in moved]
    return train, held


def build_bundle(session: Session, keyring: KeyRing, store: BlobStore, job: Job) -> bytes:
    """The training bundle as a gzipped tar: spec.json, train.jsonl, eval.jsonl."""

    version = session.get(ModelVersion, job.version_id)
    family = session.get(ModelFamily, version.family_id)
    base = session.get(BaseModelRecord, version.base_model_id)
    private = version.training_config.get("privacy")
    records: list[dict[str, Any]] = []
    for used in version.datasets:
        receipt = session.get(ScanReceipt, used["receipt"])
        # The sanitized view holds the text fields and, where the domain's PII rules name a
        # customer key, `unit`: the keyed hash the DP trainer groups a customer's records by.
        records += [
            {k: v for k, v in r.items() if k != "metadata"}
            for r in iter_sanitized(session, keyring, store, receipt)
        ]
    suite = version.training_config.get("eval_suite") or {}
    train, held = split(records, float(suite.get("holdout_fraction", 0.1)))
    held += list(suite.get("multiple_choice") or [])
    # Canaries go into the training part only, never the held-out part.
    plan = job.params.get("memorization") or {}
    train = canaries.insert(train, plan, job.uid)
    spec = {
        "job": job.uid,
        "attempt": job.attempt,
        "family": family.name,
        "version": version.number,
        "base_model": {"path": base.path, "weights_sha256": version.base_weights_hash},
        "lora": version.training_config.get("lora") or {},
        "hyperparameters": version.training_config.get("hyperparameters") or {},
        "seed": version.training_config.get("seed", 0),
        "evaluation": {
            "few_shot": int(suite.get("few_shot", 3)),
            "harness_tasks": list(suite.get("harness_tasks") or []),
        },
        **({"memorization": plan} if plan else {}),
        **(
            {
                "privacy": {
                    k: private[k]
                    for k in ("epsilon", "delta", "max_grad_norm", "sampling", "compare")
                    if k in private
                }
            }
            if private
            else {}
        ),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in (
            ("spec.json", json.dumps(spec, indent=2).encode()),
            ("train.jsonl", "".join(json.dumps(r) + "\n" for r in train).encode()),
            ("eval.jsonl", "".join(json.dumps(r) + "\n" for r in held).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(payload), 0o600
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def unpack_result(payload: bytes, target: Path) -> tuple[dict, dict]:
    """Unpack a worker's result and check every file against its manifest."""
    from trainers.hashing import manifest as hash_files

    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"the result is not a readable tar archive: {exc}") from exc
    try:
        claimed = json.loads((target / "manifest.json").read_text())
        metrics = json.loads((target / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"the result lacks manifest.json or metrics.json: {exc}") from exc
    actual = hash_files(target)
    if actual != claimed:
        raise InvalidInput(
            "the result's files do not match its manifest",
            details={"mismatch": sorted(set(actual.items()) ^ set(claimed.items()))[:10]},
        )
    if "adapter/adapter_model.safetensors" not in actual:
        raise InvalidInput("the result holds no adapter/adapter_model.safetensors")
    return claimed, metrics


def accept_result(
    session: Session, store: BlobStore, job: Job, payload: bytes, *, actor: Actor
) -> ModelVersion:
    """Store the adapter and metrics of the current attempt; the job succeeds exactly once."""
    version = session.get(ModelVersion, job.version_id)
    family = session.get(ModelFamily, version.family_id)
    with tempfile.TemporaryDirectory() as scratch:
        files, metrics = unpack_result(payload, Path(scratch))
    key = f"models/{family.name}/{version.uid}.adapter.tar"
    with store.stage(version.uid) as staged:
        staged.write(payload)
    if not lease.finish(session, job):
        session.rollback()
        store.discard(version.uid)
        raise Conflict("this attempt no longer owns the job", code="job_moved_on")
    version.adapter_key = key
    version.adapter_manifest = files
    version.metrics = metrics
    if version.status == VersionState.TRAINING:
        version.status = VersionState.TRAINED
    session.add(version)
    record(
        session,
        actor,
        "job.complete",
        f"model/{family.name}",
        session.get(Domain, family.domain_id).name,
        details={
            "job": job.uid,
            "attempt": job.attempt,
            "version": version.number,
            "adapter_sha256": files["adapter/adapter_model.safetensors"],
            "eval_loss": metrics.get("eval_loss"),
        },
    )
    # The adapter is published when the caller commits, discarded if it rolls back.
    uid = version.uid
    on_commit(session, lambda: store.publish(uid, key))
    on_rollback(session, lambda: store.discard(uid))
    return version


def fail_job(session: Session, job: Job, error: str, *, actor: Actor) -> Job:
    """A worker reports that training failed: retry while attempts remain, else fail."""
    final = job.attempt >= job.max_attempts
    attempt = job.attempt
    if not lease.release(session, job, error, on_final=fail_version):
        session.rollback()
        raise Conflict("this attempt no longer owns the job", code="job_moved_on")
    version = session.get(ModelVersion, job.version_id)
    family = session.get(ModelFamily, version.family_id)
    record(
        session,
        actor,
        "job.fail",
        f"model/{family.name}",
        session.get(Domain, family.domain_id).name,
        decision="failed",
        details={"job": job.uid, "attempt": attempt, "final": final},
    )
    session.refresh(job)
    return job
