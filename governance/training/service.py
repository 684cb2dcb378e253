"""Training jobs on the control plane: claims under leases, bundles, results, the gate.

A worker claims a job with its own principal token and receives a job-scoped token for that
attempt. With it, and only it, the worker downloads the bundle (the sanitized records, never
raw data, keys or credentials), sends heartbeats that extend the lease, and uploads the
result. A lease that lapses (a worker killed with kill -9) puts the job back in the queue as
a new attempt; the old attempt's token stops working, so a job completes exactly once.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
import secrets
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

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


def holdout_score(record: dict[str, Any]) -> float:
    """Where a record falls in [0, 1), from its hash: what decides its side of the split."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class SplitPlan:
    """The held-out split of a stream of records, decided in two passes over it with bounded
    memory: the first counts and keeps the `least` lowest-scored training records (the ones a
    small split is topped up with); the second (`side`) says where each record goes.

    A record is held out when its score is under the fraction, so it lands on the same side
    whatever else the data holds. Where chance leaves fewer than `least` held out (small
    data), the training records with the lowest scores join them until there are, as long as
    more than half stays for training."""

    def __init__(self, fraction: float, least: int = MIN_HELD_OUT_RECORDS) -> None:
        self.fraction, self.least = fraction, least
        self.total = self.held = 0
        self.lowest: list[tuple[float, int]] = []  # max-heap of (-score, -index)
        self.moved: dict[int, int] = {}  # index -> order in which it joins the held out

    def count(self, index: int, record: dict[str, Any]) -> None:
        score = holdout_score(record)
        self.total += 1
        if score < self.fraction:
            self.held += 1
        elif len(self.lowest) < self.least:
            heapq.heappush(self.lowest, (-score, -index))
        elif (-score, -index) > self.lowest[0]:
            heapq.heapreplace(self.lowest, (-score, -index))

    def settle(self) -> None:
        held = self.held
        for _neg_score, neg_index in sorted(self.lowest, reverse=True):
            if held >= self.least or self.total - held - 1 < self.total / 2:
                break
            self.moved[-neg_index] = len(self.moved)
            held += 1

    @property
    def train_size(self) -> int:
        return self.total - self.held - len(self.moved)

    def side(self, index: int, record: dict[str, Any]) -> str:
        """ "held", "moved" (held, after the others) or "train"."""
        if holdout_score(record) < self.fraction:
            return "held"
        return "moved" if index in self.moved else "train"


def split(
    records: list[dict[str, Any]], fraction: float, least: int = MIN_HELD_OUT_RECORDS
) -> tuple[list, list]:
    """The split of a list of records (`SplitPlan`): (train, held out)."""
    plan = SplitPlan(fraction, least)
    for index, rec in enumerate(records):
        plan.count(index, rec)
    plan.settle()
    train, held, moved = [], [], [None] * len(plan.moved)
    for index, rec in enumerate(records):
        where = plan.side(index, rec)
        if where == "moved":
            moved[plan.moved[index]] = rec
        else:
            (held if where == "held" else train).append(rec)
    return train, held + moved


def build_bundle(
    session: Session, keyring: KeyRing, store: BlobStore, job: Job, out: IO[bytes], scratch: Path
) -> None:
    """Write the training bundle, a gzipped tar of spec.json, train.jsonl and eval.jsonl, to
    `out`.

    The sanitized views are read shard after shard, twice (once to plan the split, once to
    write), and the members are spooled to files under `scratch` (owner-only, removed when
    closed), so memory holds a shard's chunk at most, not a version."""
    version = session.get_one(ModelVersion, job.version_id)
    family = session.get_one(ModelFamily, version.family_id)
    base = session.get_one(BaseModelRecord, version.base_model_id)
    private = version.training_config.get("privacy")
    receipts = [session.get_one(ScanReceipt, used["receipt"]) for used in version.datasets]

    def records() -> Iterator[dict[str, Any]]:
        for receipt in receipts:
            # The sanitized view holds the text fields and, where the domain's PII rules name
            # a customer key, `unit`: the keyed hash the DP trainer groups a customer's
            # records by.
            for r in iter_sanitized(session, keyring, store, receipt):
                yield {k: v for k, v in r.items() if k != "metadata"}

    suite = version.training_config.get("eval_suite") or {}
    memorization = job.params.get("memorization") or {}
    spec = bundle_spec(job, version, family, base, suite, memorization, private)
    write_bundle(out, scratch, records, suite, memorization, job.uid, spec)


def write_bundle(
    out: IO[bytes],
    scratch: Path,
    records: Callable[[], Iterable[dict[str, Any]]],
    suite: dict[str, Any],
    memorization: dict[str, Any],
    job_uid: str,
    spec: dict[str, Any],
) -> None:
    """Write a bundle from `records()` (called twice: a pass to plan the split, a pass to
    write) in bounded memory: the members are spooled to owner-only files under `scratch`."""
    plan = SplitPlan(float(suite.get("holdout_fraction", 0.1)))
    for index, rec in enumerate(records()):
        plan.count(index, rec)
    plan.settle()
    # Canaries go into the training part only, never the held-out part.
    placed = canaries.placements(memorization, job_uid, plan.train_size)
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (
        tempfile.TemporaryFile(dir=scratch) as train_file,
        tempfile.TemporaryFile(dir=scratch) as eval_file,
    ):
        moved: list[Any] = [None] * len(plan.moved)
        written = 0

        def canaries_due() -> None:
            nonlocal written
            while written in placed:
                train_file.write(json.dumps(placed[written]).encode() + b"\n")
                written += 1

        for index, rec in enumerate(records()):
            where = plan.side(index, rec)
            if where == "train":
                canaries_due()
                train_file.write(json.dumps(rec).encode() + b"\n")
                written += 1
            elif where == "moved":
                moved[plan.moved[index]] = rec
            else:
                eval_file.write(json.dumps(rec).encode() + b"\n")
        canaries_due()
        for rec in [*moved, *(suite.get("multiple_choice") or [])]:
            eval_file.write(json.dumps(rec).encode() + b"\n")
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            add_member(tar, "spec.json", io.BytesIO(json.dumps(spec, indent=2).encode()))
            add_member(tar, "train.jsonl", train_file)
            add_member(tar, "eval.jsonl", eval_file)


def add_member(tar: tarfile.TarFile, name: str, source: IO[bytes]) -> None:
    """Add a file object's content (read from its start) as an owner-only member."""
    info = tarfile.TarInfo(name)
    info.size = source.seek(0, io.SEEK_END)
    info.mode = 0o600
    source.seek(0)
    tar.addfile(info, source)


def bundle_spec(job, version, family, base, suite, memorization, private) -> dict[str, Any]:
    return {
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
        **({"memorization": memorization} if memorization else {}),
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
