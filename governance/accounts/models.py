"""Tables and API schemas for principals and API tokens."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import UTCDateTime, utcnow

# Principal names appear in policy files, audit entries and URLs, so keep them plain.
PRINCIPAL_NAME_PATTERN = r"^[a-z][a-z0-9._-]{1,62}$"


class PrincipalKind(enum.StrEnum):
    USER = "user"
    SERVICE = "service"


class Principal(SQLModel, table=True):
    __tablename__ = "principals"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(max_length=63, sa_column_kwargs={"unique": True}, nullable=False)
    kind: str = SQLField(max_length=16, nullable=False)
    display_name: str | None = SQLField(default=None, max_length=200)
    disabled: bool = SQLField(default=False, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: str = SQLField(primary_key=True, max_length=32)
    principal_id: int = SQLField(foreign_key="principals.id", nullable=False, index=True)
    # Only the SHA-256 of the token is stored; the token itself is shown once at creation.
    token_hash: str = SQLField(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    description: str | None = SQLField(default=None, max_length=200)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    last_used_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class PrincipalCreate(BaseModel):
    """Request body to create a principal."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PRINCIPAL_NAME_PATTERN, description="Unique name used in policies")
    kind: PrincipalKind = PrincipalKind.USER
    display_name: str | None = Field(default=None, max_length=200)


class PrincipalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: PrincipalKind
    display_name: str | None
    disabled: bool
    created_at: dt.datetime


class PrincipalList(BaseModel):
    items: list[PrincipalRead]


class PrincipalPath(BaseModel):
    name: str = Field(max_length=63)


class RoleBinding(BaseModel):
    domain: str
    role: str


class WhoAmI(PrincipalRead):
    roles: list[RoleBinding]


class TokenCreate(BaseModel):
    """Request body to issue a token for a principal."""

    model_config = ConfigDict(extra="forbid")

    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Lifetime in days; the instance default when omitted",
    )
    never_expires: bool = Field(
        default=False, strict=True, description="Issue a token without expiry (true or false)"
    )
    description: str | None = Field(default=None, max_length=200)


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    principal: str
    description: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class TokenList(BaseModel):
    items: list[TokenRead]


class TokenIssued(TokenRead):
    token: str = Field(description="The bearer token; shown only in this response")


class TokenPath(BaseModel):
    token_id: str = Field(max_length=32)


# Keep the enum's values in the column type checked by the database too.
Principal.__table__.append_constraint(
    sa.CheckConstraint("kind IN ('user', 'service')", name="kind")
)
