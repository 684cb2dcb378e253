"""Tables of the audit log and the API schemas that read it."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, get_args

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import BIGINT_MAX, QueryTime, UTCDateTime


class AuditHead(SQLModel, table=True):
    """One row: the size of the log. Bumping it is how an append takes its sequence numbers,
    so appends from every process form one gap-free sequence."""

    __tablename__ = "audit_head"

    id: int = SQLField(default=1, primary_key=True)
    size: int = SQLField(default=0, sa_type=sa.BigInteger, nullable=False)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entries"
    __table_args__ = (
        sa.Index("ix_audit_entries_time", "time"),
        sa.Index("ix_audit_entries_principal_time", "principal", "time"),
        sa.Index("ix_audit_entries_domain_time", "domain", "time"),
    )

    seq: int = SQLField(
        primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    time: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
    principal: str = SQLField(max_length=63, nullable=False)
    action: str = SQLField(max_length=64, nullable=False)
    object: str = SQLField(max_length=200, nullable=False)
    domain: str | None = SQLField(default=None, max_length=63)
    decision: str = SQLField(max_length=8, nullable=False)
    policy_hash: str | None = SQLField(default=None, max_length=64)
    request_id: str | None = SQLField(default=None, max_length=64)
    details: str = SQLField(default="{}", sa_type=sa.Text, nullable=False)
    leaf_hash: str = SQLField(max_length=64, nullable=False)
    # Set when retention pruned the entry: its content is gone (a fixed tombstone), its leaf
    # hash stays, so the tree, every checkpoint and every proof over it still verify.
    pruned_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class AuditCursor(SQLModel, table=True):
    """How far a consumer of the log (webhooks, the OpenLineage emitter) has read: the last
    entry it handled. It moves in the same transaction as what the consumer wrote, or only
    after what it sent was accepted, so nothing is skipped."""

    __tablename__ = "audit_cursors"

    name: str = SQLField(primary_key=True, max_length=32)
    audit_seq: int = SQLField(default=0, sa_type=sa.BigInteger, nullable=False)


class AuditCheckpoint(SQLModel, table=True):
    __tablename__ = "audit_checkpoints"

    id: int | None = SQLField(default=None, primary_key=True)
    tree_size: int = SQLField(
        sa_type=sa.BigInteger, nullable=False, sa_column_kwargs={"unique": True}
    )
    root: str = SQLField(max_length=64, nullable=False)
    # Kept as the exact string that was signed.
    timestamp: str = SQLField(max_length=40, nullable=False)
    key_id: str = SQLField(max_length=16, nullable=False)
    signature: str = SQLField(max_length=128, nullable=False)
    # The same checkpoint as a C2SP tlog-checkpoint signed note (origin, size, base64 root).
    note: str | None = SQLField(default=None, sa_type=sa.Text)


class AuditCosignature(SQLModel, table=True):
    """A witness's cosignature/v1 over one of our checkpoints, as its note signature line."""

    __tablename__ = "audit_cosignatures"
    __table_args__ = (sa.UniqueConstraint("witness", "tree_size"),)

    id: int | None = SQLField(default=None, primary_key=True)
    witness: str = SQLField(max_length=200, nullable=False)
    tree_size: int = SQLField(sa_type=sa.BigInteger, nullable=False)
    line: str = SQLField(sa_type=sa.Text, nullable=False)


class EntryRead(BaseModel):
    seq: int
    time: str
    principal: str
    action: str
    object: str
    domain: str | None
    decision: str
    policy_hash: str | None
    request_id: str | None
    details: dict[str, Any]
    leaf_hash: str


class EntryPage(BaseModel):
    items: list[EntryRead]
    next_after_seq: int | None = Field(description="Pass as after_seq for the next page")


# Every decision an entry can carry: authorization (allow, deny), state changes (ok, failed,
# refused), evaluation gates (passed) and reviewers' decisions (approve, reject).
AuditDecision = Literal["allow", "deny", "ok", "failed", "refused", "passed", "approve", "reject"]
AUDIT_DECISIONS = get_args(AuditDecision)


class EntryQuery(BaseModel):
    """Filters for audit entries; all optional, combined with AND."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_time: QueryTime | None = Field(default=None, alias="from")
    to_time: QueryTime | None = Field(default=None, alias="to")
    principal: str | None = None
    domain: str | None = None
    model: str | None = Field(default=None, description="Model family name")
    action: str | None = None
    decision: AuditDecision | None = None
    after_seq: int = Field(default=0, ge=0, le=BIGINT_MAX)
    limit: int = Field(default=100, ge=1, le=1000)


class CheckpointRead(BaseModel):
    tree_size: int
    root: str
    timestamp: str
    key_id: str
    signature: str


class InclusionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tree_size: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="Defaults to the latest checkpoint"
    )


class SeqPath(BaseModel):
    seq: int = Field(ge=1, le=BIGINT_MAX)


class InclusionProof(BaseModel):
    seq: int
    leaf_hash: str
    tree_size: int
    root: str
    proof: list[str]


class ConsistencyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_size: int = Field(ge=1, le=BIGINT_MAX)
    new_size: int = Field(ge=1, le=BIGINT_MAX)


class ConsistencyProof(BaseModel):
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str]


class AuthorizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=63)
    domain: str = Field(min_length=1, max_length=63)
    object: str = Field(min_length=1, max_length=200)
    action: str = Field(min_length=1, max_length=64)


class AuthorizeResponse(BaseModel):
    allowed: bool
    decision: Literal["allow", "deny"]
    rule: list[str] | None
    policy_hash: str
    audit_seq: int


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "csv"] = "json"


class WhoDidQuery(EntryQuery):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format: Literal["json", "csv"] = "json"


class ReportSignature(BaseModel):
    algorithm: Literal["Ed25519"]
    key_id: str
    value: str = Field(description="Base64 Ed25519 signature")
    signed: str = Field(description="What the signature covers")


# With format=csv a report is CSV instead, its detached signature in X-Signature-Ed25519.
REPORT_OPENAPI: dict[str, Any] = {
    "content": {"text/csv": {"schema": {"type": "string"}}},
    "headers": {
        "X-Signature-Ed25519": {
            "description": "With format=csv: base64 Ed25519 signature of the CSV's bytes",
            "schema": {"type": "string"},
        }
    },
}


class WhoMayRow(BaseModel):
    principal: str
    domain: str
    model: str
    role: str
    rule: str = Field(description="The policy line that grants the query")
    binding: str = Field(description="The role binding that gives the principal the role")


class WhoMayBody(BaseModel):
    kind: Literal["who-may"]
    policy_hash: str
    domains: list[str]
    generated_at: str
    rows: list[WhoMayRow]


class WhoMayReport(BaseModel):
    """Who may query which model, computed from the policy in force; signed (JSON or CSV)."""

    model_config = ConfigDict(openapi_extra=REPORT_OPENAPI)

    report: WhoMayBody
    signature: ReportSignature


class WhoDidRow(BaseModel):
    principal: str
    domain: str
    model: str
    queries: int
    denied: int
    first: str
    last: str


class WhoDidBody(BaseModel):
    kind: Literal["who-did"]
    filters: dict[str, Any]
    generated_at: str
    rows: list[WhoDidRow]


class WhoDidReport(BaseModel):
    """Who did query which model in a period, from the log; signed (JSON or CSV)."""

    model_config = ConfigDict(openapi_extra=REPORT_OPENAPI)

    report: WhoDidBody
    signature: ReportSignature
