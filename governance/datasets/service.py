"""Datasets and versions: create, stream an upload in, read back, delete (crypto-shred)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import sqlalchemy as sa
from sqlmodel import Session, select

from audit.log import canonical
from governance.audit.service import Actor, record
from governance.datasets.models import Dataset, DatasetCreate, DatasetVersion, VersionStatus
from governance.datasets.records import BlobWriter, iter_lines, parse_record, read_blob
from governance.db import on_commit, on_rollback
from governance.domains.keys import KeyRing
from governance.domains.models import Domain
from governance.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from governance.storage import BlobStore


@dataclass(frozen=True)
class UploadLimits:
    max_record_bytes: int = 1 << 20
    max_upload_bytes: int = 4 << 30


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
    with store.stage(uid) as staged:
        writer = BlobWriter(staged, data_key, uid)
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
        writer.close()
    key = f"{domain.name}/{uid}.blob"
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
            blob_key=key,
            wrapped_key=wrapped,
            created_by=actor.principal,
        )
        session.add(version)
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
                "content_hash": version.content_hash,
            },
        )
    except sa.exc.IntegrityError as exc:
        session.rollback()
        store.discard(uid)
        raise Conflict("another upload to this dataset committed first; retry") from exc
    except BaseException:
        session.rollback()
        store.discard(uid)
        raise
    # The blob is published when the caller commits the version, discarded if it rolls back.
    on_commit(session, lambda: store.publish(uid, key))
    on_rollback(session, lambda: store.discard(uid))
    return version


def iter_version_records(
    session: Session, keyring: KeyRing, store: BlobStore, version: DatasetVersion
) -> Iterator[dict[str, Any]]:
    """Decrypt and yield a version's records (raw data: only for the scanner and probes)."""
    if version.status != VersionStatus.READY or version.wrapped_key is None:
        raise Conflict(f"dataset version {version.uid} was deleted", details={"uid": version.uid})
    domain = session.get(Domain, version.domain_id)
    key = keyring.open_data_key(session, domain, version.uid, version.wrapped_key)
    with store.open(version.blob_key) as handle:
        yield from read_blob(handle, key, version.uid)


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
        version = session.exec(select(DatasetVersion).where(DatasetVersion.uid == uid)).first()
        return version.blob_key if version is not None and version.blob_key else None

    return store.sweep(committed)
