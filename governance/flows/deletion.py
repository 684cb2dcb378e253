"""Deleting a dataset version: crypto-shred it, erase what was derived from its text, and taint
every model version trained on it, in one transaction (delete -> taint -> retrain; the retrain
is queued by the taint and started by the scheduler)."""

from __future__ import annotations

from sqlmodel import Session, select

from governance.audit.service import Actor, record
from governance.datasets.models import DatasetVersion, VersionStatus
from governance.datasets.service import iter_version_records, version_shards
from governance.db import on_commit, scrub_journal, utcnow
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict
from governance.families.taint import taint_trained_on
from governance.jobs.service import erase_results
from governance.pii.cache import content_key, forget
from governance.pii.models import (
    QuarantinedRecord,
    RecallLabel,
    ScanReceipt,
    ScanRun,
    ScanShardResult,
)
from governance.pii.scanning import view_prefix, view_shard_key
from governance.storage import BlobStore


def delete_version(
    session: Session,
    keyring: KeyRing,
    store: BlobStore,
    version: DatasetVersion,
    reason: str,
    *,
    actor: Actor,
) -> DatasetVersion:
    """Crypto-shred a version: destroy its data key and blob, keep a tombstone.

    Everything derived from its text goes with it, in the same transaction: the scan-cache
    rows of its records (found by their keyed hashes while the data can still be read), the
    keys of its sanitized views and sealed samples, the receipts' redacted samples, the
    quarantine's previews and spans, labellers' comments, and the results of jobs run on it.
    """
    if version.status == VersionStatus.DELETED:
        raise Conflict(
            f"version {version.number} is already deleted",
            details={"deleted_at": version.deleted_at.isoformat()},
        )
    owner = session.get(Domain, version.domain_id)
    cache_rows = forget(
        session,
        content_key(keyring, session, owner),
        iter_version_records(session, keyring, store, version),
    )
    # Its shards' ciphertext goes once the key has.
    doomed = []
    for shard in version_shards(session, version):
        if shard.blob_key:
            doomed.append(shard.blob_key)
        shard.blob_key = None
        session.add(shard)
    # The sanitized views of its scans are derived from its text too: their keys go with it,
    # those of scans still running as well (their shards' outcomes hold samples of its text).
    views = 0
    for run in session.exec(select(ScanRun).where(ScanRun.version_id == version.id)):
        run.wrapped_key = None
        session.add(run)
        views += 1
        prefix = view_prefix(owner, run.uid)
        doomed += [view_shard_key(prefix, ordinal) for ordinal in range(run.shards)]
        for result in session.exec(select(ScanShardResult).where(ScanShardResult.run_id == run.id)):
            session.delete(result)
    for receipt in session.exec(select(ScanReceipt).where(ScanReceipt.version_id == version.id)):
        if receipt.sanitized_blob_key and not receipt.sanitized_shards:
            doomed.append(receipt.sanitized_blob_key)  # a view stored whole
            views += 1
        receipt.sanitized_wrapped_key = None
        receipt.unflagged_sealed = None
        receipt.label_sealed = None
        receipt.sanitized_blob_key = None
        # Redacted samples are record text with the values replaced: they go too. The counts,
        # verdict and canary table stay, as evidence that the version was scanned.
        receipt.samples = []
        receipt.label_sample = []
        session.add(receipt)
        for label in session.exec(select(RecallLabel).where(RecallLabel.receipt_id == receipt.id)):
            label.comment = None  # a steward's words about a record may quote it
            session.add(label)
    # Held records' previews, spans and comments are its text, digits masked: delete the rows.
    held = session.exec(
        select(QuarantinedRecord).where(QuarantinedRecord.version_id == version.id)
    ).all()
    for row in held:
        session.delete(row)
    # Job results derived from it (a scan job's result is its receipt, samples included).
    jobs_erased = erase_results(session, f"dataset-version/{version.uid}")
    version.status = VersionStatus.DELETED
    version.wrapped_key = None
    version.blob_key = None
    version.deleted_by = actor.principal
    version.deleted_at = utcnow()
    version.delete_reason = reason
    session.add(version)
    domain = session.get(Domain, version.domain_id)
    record(
        session,
        actor,
        "dataset.delete",
        f"dataset/{version.dataset_id}/version/{version.number}",
        domain.name,
        details={
            "uid": version.uid,
            "reason_chars": len(reason),
            "content_hash": version.content_hash,
            "scan_cache_rows_deleted": cache_rows,
            "shards": version.shards,
            "sanitized_views_destroyed": views,
            "quarantine_rows_deleted": len(held),
            "job_results_erased": jobs_erased,
        },
    )
    # Deletion propagates: every model version trained on this data is tainted in the same
    # transaction.
    taint_trained_on(session, version, actor=actor)
    # The key is gone with the caller's commit; removing the ciphertext then is the belt to
    # those braces, and so is leaving no copy of the erased rows in SQLite's journal.

    def after_commit() -> None:
        for key in doomed:
            store.delete(key)
        scrub_journal(session.get_bind())

    on_commit(session, after_commit)
    return version
