"""Tables and API schemas for datasets, dataset versions and their tombstones."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import INT_MAX, UTCDateTime, utcnow

DATASET_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"


class VersionStatus:
    READY = "ready"
    DELETED = "deleted"


class Dataset(SQLModel, table=True):
    __tablename__ = "datasets"
    __table_args__ = (sa.UniqueConstraint("domain_id", "name"),)

    id: int | None = SQLField(default=None, primary_key=True)
    domain_id: int = SQLField(foreign_key="domains.id", nullable=False, index=True)
    name: str = SQLField(max_length=63, nullable=False)
    description: str = SQLField(default="", max_length=1000, nullable=False)
    created_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class DatasetVersion(SQLModel, table=True):
    """One immutable upload. The row exists only once every record is stored and encrypted."""

    __tablename__ = "dataset_versions"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "number"),)

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=32, nullable=False, sa_column_kwargs={"unique": True})
    dataset_id: int = SQLField(foreign_key="datasets.id", nullable=False, index=True)
    domain_id: int = SQLField(foreign_key="domains.id", nullable=False, index=True)
    number: int = SQLField(nullable=False)
    tax_year: int = SQLField(nullable=False)
    status: str = SQLField(max_length=16, nullable=False, default=VersionStatus.READY)
    # Merkle root (RFC 6962) of the records' leaf hashes, hex.
    content_hash: str = SQLField(max_length=64, nullable=False)
    record_count: int = SQLField(nullable=False)
    plaintext_bytes: int = SQLField(sa_type=sa.BigInteger, nullable=False)
    # How many shards (`dataset_shards`) hold the records; `blob_key` names the first one's
    # prefix (NULL once deleted).
    shards: int = SQLField(default=1, nullable=False)
    blob_key: str | None = SQLField(default=None, max_length=200)
    # The data key wrapped by the domain key; destroyed (NULL) when the version is deleted.
    wrapped_key: bytes | None = SQLField(default=None, sa_type=sa.LargeBinary)
    created_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    deleted_by: str | None = SQLField(default=None, max_length=63)
    deleted_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    delete_reason: str | None = SQLField(default=None, max_length=500)


class DatasetShard(SQLModel, table=True):
    """One bounded piece of a version, cut at upload: its own encrypted blob and Merkle root.

    A scan maps over a version's shards (one job each, on any runner or worker) and reduces
    their results in shard order; a training bundle streams them one at a time. Versions
    stored before shards existed have one shard: their whole blob, under the version's uid.
    """

    __tablename__ = "dataset_shards"
    __table_args__ = (sa.UniqueConstraint("version_id", "ordinal"),)

    id: int | None = SQLField(default=None, primary_key=True)
    version_id: int = SQLField(foreign_key="dataset_versions.id", nullable=False, index=True)
    # The shard's place in the version, from 0.
    ordinal: int = SQLField(nullable=False)
    # The position in the version of the shard's first record (from 0).
    first_record: int = SQLField(sa_type=sa.BigInteger, nullable=False)
    record_count: int = SQLField(nullable=False)
    plaintext_bytes: int = SQLField(sa_type=sa.BigInteger, nullable=False)
    # Merkle root (RFC 6962) of the shard's own records, hex.
    content_hash: str = SQLField(max_length=64, nullable=False)
    # The name its chunks are sealed under (associated data), and where it is stored; the
    # blob key is NULL once the version is deleted.
    blob_uid: str = SQLField(max_length=64, nullable=False, sa_column_kwargs={"unique": True})
    blob_key: str | None = SQLField(default=None, max_length=200)


class DatasetCreate(BaseModel):
    """Request body to create a dataset in a domain."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=DATASET_NAME_PATTERN)
    description: str = Field(default="", max_length=1000)


class DatasetRead(BaseModel):
    id: int
    domain: str
    name: str
    description: str
    created_by: str
    created_at: dt.datetime


class DatasetList(BaseModel):
    items: list[DatasetRead]


class DatasetVersionRead(BaseModel):
    dataset_id: int
    dataset: str
    domain: str
    version: int
    uid: str
    tax_year: int
    status: str
    content_hash: str
    record_count: int
    plaintext_bytes: int
    shards: int = Field(default=1, description="How many shards the version is stored in.")
    created_by: str
    created_at: dt.datetime
    deleted_by: str | None
    deleted_at: dt.datetime | None
    delete_reason: str | None
    scan_verdict: str | None = Field(
        default=None,
        description="The latest PII scan's verdict (pass, redacted, failed, blocked, error); "
        "none until a scan has run. `status` is the stored version's own state.",
    )


class DatasetVersionList(BaseModel):
    items: list[DatasetVersionRead]


class DomainDatasetsPath(BaseModel):
    name: str = Field(max_length=63, description="Domain name")


class DatasetPath(BaseModel):
    dataset_id: int = Field(ge=1, le=INT_MAX)


class VersionPath(BaseModel):
    dataset_id: int = Field(ge=1, le=INT_MAX)
    number: int = Field(ge=1, le=INT_MAX)


class UploadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tax_year: int = Field(ge=1900, le=2200, description="The tax year the records belong to")


class DeleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, description="Why the version is deleted")
