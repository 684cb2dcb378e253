"""Approval requests and their signed decisions."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import INT_MAX, UTCDateTime, utcnow


class RequestState:
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    # The subject changed after the request was made (a new scan, new rules, a deleted
    # version, a retrained model): decisions about the old subject do not carry over.
    INVALIDATED = "invalidated"
    OPEN = frozenset({PENDING, APPROVED})


class ApprovalRequest(SQLModel, table=True):
    """A request that reviewers approve one exact subject (bound by its digest)."""

    __tablename__ = "approval_requests"
    __table_args__ = (sa.Index("ix_approval_requests_subject", "kind", "subject", "family"),)

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=32, unique=True, nullable=False)
    # NULL for requests about the service itself (policy changes): the policy's system domain.
    domain_id: int | None = SQLField(
        default=None, foreign_key="domains.id", nullable=True, index=True
    )
    kind: str = SQLField(max_length=32, nullable=False)
    # What is approved: `dataset-version/<uid>` or `model-version/<family>/<number>`.
    subject: str = SQLField(max_length=200, nullable=False)
    subject_digest: str = SQLField(max_length=64, nullable=False)
    family: str = SQLField(max_length=63, nullable=False)
    summary: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    required_roles: list[str] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    # Principals who may not decide: the requester, and for promotions the trainer.
    excluded: list[str] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    state: str = SQLField(max_length=16, nullable=False, index=True)
    state_reason: str | None = SQLField(default=None, max_length=300)
    requested_by: str = SQLField(max_length=63, nullable=False)
    requested_at: dt.datetime = SQLField(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False
    )
    expires_at: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
    closed_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    policy_hash: str = SQLField(max_length=64, nullable=False)
    # Bumped by every decision before anything is read, so concurrent deciders serialize.
    lock_version: int = SQLField(default=0, nullable=False)


class ApprovalDecision(SQLModel, table=True):
    """One reviewer's signed decision in one role; a role and a reviewer count once."""

    __tablename__ = "approval_decisions"
    __table_args__ = (
        sa.UniqueConstraint("request_id", "reviewer", name="uq_approval_decisions_reviewer"),
        sa.UniqueConstraint("request_id", "role", name="uq_approval_decisions_role"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    request_id: int = SQLField(foreign_key="approval_requests.id", nullable=False, index=True)
    reviewer: str = SQLField(max_length=63, nullable=False)
    role: str = SQLField(max_length=63, nullable=False)
    decision: str = SQLField(max_length=16, nullable=False)
    comment: str = SQLField(default="", max_length=2000, nullable=False)
    decided_at: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
    policy_hash: str = SQLField(max_length=64, nullable=False)
    digest: str = SQLField(max_length=64, nullable=False)
    signature: str = SQLField(max_length=128, nullable=False)
    key_id: str = SQLField(max_length=64, nullable=False)
    audit_seq: int | None = SQLField(default=None)


# --- API schemas ---------------------------------------------------------------------------


class BaseModelUseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(min_length=1, max_length=63)
    domain: str = Field(min_length=1, max_length=63)


class DatasetUseCreate(BaseModel):
    """Ask reviewers to approve one dataset version for training one model family."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: int = Field(ge=1, le=INT_MAX)
    version: int = Field(ge=1, le=INT_MAX)
    family: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="The model family the data will train.",
    )


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=2000)
    role: str | None = Field(
        default=None,
        max_length=63,
        description="The role to decide in; needed only when you hold several required ones.",
    )


class DecisionRead(BaseModel):
    reviewer: str
    role: str
    decision: str
    comment: str
    decided_at: dt.datetime
    policy_hash: str
    digest: str
    signature: str
    key_id: str
    audit_seq: int | None


class RequestRead(BaseModel):
    uid: str
    domain: str
    kind: str
    subject: str
    subject_digest: str
    family: str
    state: str
    state_reason: str | None
    required_roles: list[str]
    missing_roles: list[str]
    requested_by: str
    requested_at: dt.datetime
    expires_at: dt.datetime
    closed_at: dt.datetime | None
    policy_hash: str
    decisions: list[DecisionRead]


class RequestDetail(RequestRead):
    summary: dict[str, Any]
    evidence: dict[str, Any] = Field(
        description="What the reviewer judges: scan counts and redacted samples for data; "
        "lineage and evaluation for a promotion."
    )
    policy_in_force: str


class RequestList(BaseModel):
    items: list[RequestRead]
