"""Datasets and versions: create, stream an upload in, read back, delete (crypto-shred)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import sqlalchemy as sa
from sqlmodel import Session, select

from audit import merkle
from audit.log import canonical
from governance.audit.service import Actor, record
from governance.datasets.models import (
    Dataset,
    DatasetCreate,
    DatasetShard,
    DatasetVersion,
    VersionStatus,
)
from governance.datasets.records import (
    CorruptBlob,
    ShardedWriter,
    iter_lines,
    parse_record,
    read_blob,
)
from governance.db import on_commit, on_rollback
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from governance.storage import BlobStore


@dataclass(frozen=True)
class UploadLimits:
    max_record_bytes: int = 1 << 20
    max_upload_bytes: int = 4 << 30
    # Where shards are cut (plaintext bytes): a scan runs one job per shard.
    shard_bytes: int = 8 << 20

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> UploadLimits:
        return cls(
            max_record_bytes=int(settings["RECORD_MAX_BYTES"]),
            max_upload_bytes=int(settings["UPLOAD_MAX_BYTES"]),
            shard_bytes=int(settings["DATASET_SHARD_BYTES"]),
        )


def create_dataset(session: Session, domain: Domain, data: DatasetCreate, *, actor: Actor):
    """Create a dataset in a domain."""
    # Checked first, so a refusal leaves the caller's transaction as it was; the unique key
    # still decides a race (and then the transaction is rolled back).
    taken = session.exec(
        select(Dataset.id).where(Dataset.domain_id == domain.id, Dataset.name == data.name)
    ).first()
    if taken is not None:
        raise Conflict(
            f"domain {domain.name} already has a dataset {data.name!r}", details={"name": data.name}
        )
    dataset = Dataset(
        domain_id=domain.id,
        name=data.name,
        description=data.description,
        created_by=actor.principal,
    )
    session.add(dataset)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        session.rollback()
        raise Conflict(
            f"domain {domain.name} already has a dataset {data.name!r}", details={"name": data.name}
        ) from exc
    record(
        session,
        actor,
        "dataset.create",
        f"dataset/{dataset.id}",
        domain.name,
        details={"name": data.name},
    )
    return dataset


def list_datasets(session: Session, domain: Domain) -> list[Dataset]:
    return list(
        session.exec(select(Dataset).where(Dataset.domain_id == domain.id).order_by(Dataset.name))
    )


def find_dataset(session: Session, dataset_id: int) -> tuple[Dataset, Domain] | None:
    """Return a dataset with its domain, or None."""
    row = session.exec(
        select(Dataset, Domain).where(Dataset.id == dataset_id, Dataset.domain_id == Domain.id)
    ).first()
    return (row[0], row[1]) if row else None


def get_dataset(session: Session, dataset_id: int) -> tuple[Dataset, Domain]:
    """Return a dataset with its domain, or raise NotFound (for callers that may see all)."""
    found = find_dataset(session, dataset_id)
    if found is None:
        raise NotFound(f"no dataset {dataset_id}", details={"dataset_id": dataset_id})
    return found


def get_version(session: Session, dataset: Dataset, number: int) -> DatasetVersion:
    version = session.exec(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == number
        )
    ).first()
    if version is None:
        raise NotFound(
            f"dataset {dataset.id} has no version {number}",
            details={"dataset_id": dataset.id, "version": number},
        )
    return version


def list_versions(session: Session, dataset: Dataset) -> list[DatasetVersion]:
    return list(
        session.exec(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.number)
        )
    )


def upload_version(
    session: Session,
    keyring: KeyRing,
    store: BlobStore,
    dataset: Dataset,
    domain: Domain,
    tax_year: int,
    stream: IO[bytes],
    *,
    actor: Actor,
    limits: UploadLimits = UploadLimits(),
) -> DatasetVersion:
    """Validate, encrypt and store a JSONL upload; the version exists only if all of it did.

    Nothing is written in plaintext: records are canonicalized, hashed and encrypted in memory
    a chunk at a time. On any error the staged blob is removed and no row is left behind.
    """
    sweep(session, store)
    uid = uuid.uuid4().hex
    data_key, wrapped = keyring.new_data_key(session, domain, uid)
    total = 0
    writer = ShardedWriter(store.stage, store.discard, data_key, uid, limits.shard_bytes)
    try:
        for line_no, raw in iter_lines(stream, limits.max_record_bytes):
            total += len(raw) + 1
            if total > limits.max_upload_bytes:
                raise PayloadTooLarge(
                    f"line {line_no}: upload exceeds {limits.max_upload_bytes} bytes",
                    details={"line": line_no, "limit": limits.max_upload_bytes},
                )
            if not raw.strip():
                continue
            writer.add(canonical(parse_record(raw, line_no)))
        if writer.content.size == 0:
            raise InvalidInput(
                "the upload holds no records", details={"line": 0}, code="empty_upload"
            )
        shards = writer.close()
    except BaseException:
        writer.discard()
        raise
    keys = {shard.blob_uid: f"{domain.name}/{shard.blob_uid}.blob" for shard in shards}
    try:
        number = (
            session.exec(
                select(sa.func.max(DatasetVersion.number)).where(
                    DatasetVersion.dataset_id == dataset.id
                )
            ).one()
            or 0
        ) + 1
        version = DatasetVersion(
            uid=uid,
            dataset_id=dataset.id,
            domain_id=domain.id,
            number=number,
            tax_year=tax_year,
            content_hash=writer.content.root().hex(),
            record_count=writer.content.size,
            plaintext_bytes=total,
            shards=len(shards),
            blob_key=f"{domain.name}/{uid}",
            wrapped_key=wrapped,
            created_by=actor.principal,
        )
        session.add(version)
        session.flush()
        session.add_all(
            DatasetShard(
                version_id=version.id,
                ordinal=shard.ordinal,
                first_record=shard.first_record,
                record_count=shard.record_count,
                plaintext_bytes=shard.plaintext_bytes,
                content_hash=shard.content_hash,
                blob_uid=shard.blob_uid,
                blob_key=keys[shard.blob_uid],
            )
            for shard in shards
        )
        session.flush()
        record(
            session,
            actor,
            "dataset.upload",
            f"dataset/{dataset.id}/version/{number}",
            domain.name,
            details={
                "uid": uid,
                "tax_year": tax_year,
                "records": writer.content.size,
                "shards": len(shards),
                "content_hash": version.content_hash,
            },
        )
    except sa.exc.IntegrityError as exc:
        session.rollback()
        writer.discard()
        raise Conflict("another upload to this dataset committed first; retry") from exc
    except BaseException:
        session.rollback()
        writer.discard()
        raise

    # The shards are published when the caller commits the version, discarded if it rolls back.
    def publish() -> None:
        for blob_uid, key in keys.items():
            store.publish(blob_uid, key)

    on_commit(session, publish)
    on_rollback(session, writer.discard)
    return version


def version_shards(session: Session, version: DatasetVersion) -> list[DatasetShard]:
    """A version's shards, in order."""
    return list(
        session.exec(
            select(DatasetShard)
            .where(DatasetShard.version_id == version.id)
            .order_by(DatasetShard.ordinal)
        )
    )


def version_key(session: Session, keyring: KeyRing, version: DatasetVersion) -> bytes:
    """Unwrap a live version's data key (raw data: only for the scanner and probes)."""
    if version.status != VersionStatus.READY or version.wrapped_key is None:
        raise Conflict(f"dataset version {version.uid} was deleted", details={"uid": version.uid})
    domain = session.get(Domain, version.domain_id)
    return keyring.open_data_key(session, domain, version.uid, version.wrapped_key)


def iter_shard_records(
    store: BlobStore, key: bytes, version: DatasetVersion, shard: DatasetShard
) -> Iterator[dict[str, Any]]:
    """Decrypt and yield one shard's records, checking they are the ones uploaded."""
    if shard.blob_key is None:
        raise Conflict(f"dataset version {version.uid} was deleted", details={"uid": version.uid})
    content = merkle.CompactRange()
    with store.open(shard.blob_key) as handle:
        for rec in read_blob(handle, key, shard.blob_uid):
            content.append(merkle.leaf_hash(canonical(rec)))
            yield rec
    if content.size != shard.record_count or content.root().hex() != shard.content_hash:
        raise CorruptBlob(
            f"dataset version {version.uid}: shard {shard.ordinal} does not hold the records "
            "uploaded"
        )


def iter_version_records(
    session: Session, keyring: KeyRing, store: BlobStore, version: DatasetVersion
) -> Iterator[dict[str, Any]]:
    """Decrypt and yield a version's records, shard after shard (raw data: only for the
    scanner and probes)."""
    key = version_key(session, keyring, version)
    for shard in version_shards(session, version):
        yield from iter_shard_records(store, key, version, shard)


def ensure_same_domain(version: DatasetVersion, domain: Domain) -> None:
    """Refuse to use a dataset version outside its own domain (segregation)."""
    if version.domain_id != domain.id:
        # No uid or name of the other domain's version in the answer.
        raise Forbidden(
            f"the dataset version belongs to another domain and cannot be used in {domain.name}",
            details={"domain": domain.name},
            code="cross_domain",
        )


def sweep(session: Session, store: BlobStore) -> dict[str, int]:
    """Settle blobs left by writers that died mid-upload."""

    def committed(uid: str) -> str | None:
        shard = session.exec(select(DatasetShard).where(DatasetShard.blob_uid == uid)).first()
        return shard.blob_key if shard is not None and shard.blob_key else None

    return store.sweep(committed)
