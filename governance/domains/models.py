"""The domain table and its API schemas."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.authz.policy import SYSTEM_DOMAIN
from governance.db import UTCDateTime, utcnow

DOMAIN_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
# ISO 3166-1 alpha-2 country, optionally with an ISO 3166-2 subdivision: US, US-CA, DE-BY.
JURISDICTION_PATTERN = r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"
RESERVED_DOMAIN_NAMES = frozenset({SYSTEM_DOMAIN})


class Domain(SQLModel, table=True):
    __tablename__ = "domains"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(max_length=63, sa_column_kwargs={"unique": True}, nullable=False)
    description: str = SQLField(default="", max_length=1000, nullable=False)
    jurisdiction: str = SQLField(max_length=8, nullable=False)
    retention_days: int = SQLField(nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    created_by: str = SQLField(max_length=63, nullable=False)
    updated_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class DomainFields(BaseModel):
    description: str = Field(default="", max_length=1000)
    jurisdiction: str = Field(
        pattern=JURISDICTION_PATTERN, description="ISO 3166 country or subdivision, e.g. US, US-CA"
    )
    retention_days: int = Field(ge=1, le=36500, description="How long data may be kept, in days")


class DomainCreate(DomainFields):
    """Request body to create a domain."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=DOMAIN_NAME_PATTERN, description="Lower-case name, e.g. consumer-tax")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_DOMAIN_NAMES:
            raise ValueError(f"{value!r} is reserved")
        return value


class DomainUpdate(BaseModel):
    """Request body to change a domain's description, jurisdiction or retention."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=1000)
    jurisdiction: str | None = Field(default=None, pattern=JURISDICTION_PATTERN)
    retention_days: int | None = Field(default=None, ge=1, le=36500)


class DomainRead(DomainFields):
    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime


class DomainList(BaseModel):
    items: list[DomainRead]


class DomainPath(BaseModel):
    name: str = Field(max_length=63)


class DomainKey(SQLModel, table=True):
    """A domain's data-encryption-key-encrypting key, wrapped by the master key."""

    __tablename__ = "domain_keys"

    id: int | None = SQLField(default=None, primary_key=True)
    domain_id: int = SQLField(
        foreign_key="domains.id", nullable=False, sa_column_kwargs={"unique": True}
    )
    wrapped_key: bytes = SQLField(sa_type=sa.LargeBinary, nullable=False)
    master_key_id: str = SQLField(max_length=16, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    rewrapped_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
