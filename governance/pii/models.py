"""Scan receipts, and the cache that makes rescans of unchanged records free."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import INT_MAX, UTCDateTime, utcnow


class Verdict:
    PASS = "pass"  # noqa: S105 (a verdict, not a password): nothing the rules act on
    REDACTED = "redacted"  # PII replaced or records dropped; the sanitized view may train
    BLOCKED = "blocked"  # a `block` rule fired: the version may not train at all
    ERROR = "error"  # the scanner failed: fail closed
    # The scan ran but does not meet the domain's gate (canary recall too low, or too many
    # records held in quarantine); `reasons` on the receipt says which.
    FAILED = "failed"

    TRAINABLE = frozenset({PASS, REDACTED})


class ScanReceipt(SQLModel, table=True):
    __tablename__ = "scan_receipts"

    id: int | None = SQLField(default=None, primary_key=True)
    version_id: int = SQLField(foreign_key="dataset_versions.id", nullable=False, index=True)
    domain_id: int = SQLField(foreign_key="domains.id", nullable=False)
    rules_hash: str = SQLField(max_length=64, nullable=False)
    content_hash: str = SQLField(max_length=64, nullable=False)
    scanner: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    # {entity type: {field: count}}; never values.
    counts: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    records_total: int = SQLField(default=0, nullable=False)
    records_redacted: int = SQLField(default=0, nullable=False)
    records_dropped: int = SQLField(default=0, nullable=False)
    records_from_cache: int = SQLField(default=0, nullable=False)
    # Held back by the residual pass awaiting a steward, and kept by one after review.
    records_quarantined: int = SQLField(default=0, nullable=False)
    records_kept: int = SQLField(default=0, nullable=False)
    # {entity type: [found, planted]} for the synthetic canaries planted in this scan.
    canaries: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    canary_recall: float | None = SQLField(default=None)
    reasons: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    verdict: str = SQLField(max_length=16, nullable=False)
    error: str | None = SQLField(default=None, max_length=500)
    samples: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    # A random sample of records the scanner found nothing in (digits masked), sealed under the
    # sanitized view's data key: reviewers read it to judge what the scanner missed, and it is
    # shredded with the view. Never returned by the API.
    unflagged_sealed: bytes | None = SQLField(default=None, sa_type=sa.LargeBinary)
    sanitized_blob_key: str | None = SQLField(default=None, max_length=200)
    sanitized_wrapped_key: bytes | None = SQLField(default=None, sa_type=sa.LargeBinary)
    sanitized_records: int = SQLField(default=0, nullable=False)
    sanitized_hash: str | None = SQLField(default=None, max_length=64)
    created_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Set when retention removed the receipt's text samples (counts and hashes stay).
    pruned_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    # Positions in the sanitized view drawn at random for a data steward to label, and the
    # recall those labels give (`governance.pii.estimate`): evidence the rules did not make.
    label_sample: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    # The sampled records' text (digits as #), sealed like `unflagged_sealed`: a steward reads
    # them without the sanitized view being decrypted in a request. Never returned by the API.
    label_sealed: bytes | None = SQLField(default=None, sa_type=sa.LargeBinary)
    recall_estimate: dict[str, Any] | None = SQLField(default=None, sa_type=sa.JSON)
    # A scan mapped over the version's shards: the sanitized view is one blob per shard (their
    # record counts, in order; empty for a view stored whole before shards existed), the seed
    # every random draw of the scan came from (derived from the content, the rules and the
    # scanner under the domain's content key), and the SHA-256 of the receipt's canonical body
    # (`governance.pii.shards.receipt_body`): the same version, rules and scanner give the
    # same digest however many workers scanned it.
    sanitized_shards: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    seed: str | None = SQLField(default=None, max_length=64)
    digest: str | None = SQLField(default=None, max_length=64)


class ScanRunState:
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ScanRun(SQLModel, table=True):
    """One scan of a version in progress: a map over its shards, then a reduce.

    Each shard is scanned by a job of its own (`scan-shard`), on any runner or Celery worker;
    the scan's own job (`scan`) scans shards too while it waits, and reduces their results in
    shard order into the receipt. The sanitized view's data key is made here, before any
    shard is scanned, so every shard's view is sealed under it."""

    __tablename__ = "scan_runs"

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=32, nullable=False, sa_column_kwargs={"unique": True})
    version_id: int = SQLField(foreign_key="dataset_versions.id", nullable=False, index=True)
    domain_id: int = SQLField(foreign_key="domains.id", nullable=False)
    rules_hash: str = SQLField(max_length=64, nullable=False)
    scanner: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    seed: str = SQLField(max_length=64, nullable=False)
    shards: int = SQLField(nullable=False)
    wrapped_key: bytes | None = SQLField(default=None, sa_type=sa.LargeBinary)
    # The `scan` job that coordinates it (none for a scan run in one process).
    job_uid: str | None = SQLField(default=None, max_length=32, index=True)
    state: str = SQLField(max_length=16, nullable=False, default=ScanRunState.RUNNING)
    receipt_id: int | None = SQLField(default=None, foreign_key="scan_receipts.id")
    created_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ScanShardResult(SQLModel, table=True):
    """What scanning one shard found: counts in the clear, text (redacted samples, held
    records' previews) sealed under the scan's view key. Written once per shard: a repeated
    attempt's row is ignored, and both attempts' results are the same."""

    __tablename__ = "scan_shard_results"
    __table_args__ = (sa.UniqueConstraint("run_id", "ordinal"),)

    id: int | None = SQLField(default=None, primary_key=True)
    run_id: int = SQLField(foreign_key="scan_runs.id", nullable=False, index=True)
    # The shard's place in the version, from 0.
    ordinal: int = SQLField(nullable=False)
    records: int = SQLField(nullable=False)
    sanitized_records: int = SQLField(nullable=False)
    sanitized_root: str = SQLField(max_length=64, nullable=False)
    # {counts, stats, blocked, canaries}: numbers only.
    summary: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    sealed: bytes | None = SQLField(default=None, sa_type=sa.LargeBinary)
    worker: str | None = SQLField(default=None, max_length=200)
    seconds: float = SQLField(default=0.0, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class RecallLabel(SQLModel, table=True):
    """A steward's label of one sampled record of a scan's sanitized view: how many personal
    values it still shows (missed) beside how many the redaction replaced (redacted)."""

    __tablename__ = "pii_recall_labels"
    __table_args__ = (sa.UniqueConstraint("receipt_id", "position"),)

    id: int | None = SQLField(default=None, primary_key=True)
    receipt_id: int = SQLField(foreign_key="scan_receipts.id", nullable=False, index=True)
    position: int = SQLField(nullable=False)
    redacted: int = SQLField(nullable=False)
    missed: int = SQLField(nullable=False)
    comment: str | None = SQLField(default=None, max_length=500)
    labelled_by: str = SQLField(max_length=63, nullable=False)
    labelled_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ScanCacheEntry(SQLModel, table=True):
    """What one text field held under a rule set: offsets, types and scores, keyed by hashes."""

    __tablename__ = "scan_cache"

    text_hash: str = SQLField(primary_key=True, max_length=64)
    rules_hash: str = SQLField(primary_key=True, max_length=64)
    findings: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)


class QuarantineDecision:
    KEEP = "keep"
    DROP = "drop"
    ALL = (KEEP, DROP)


class QuarantinedRecord(SQLModel, table=True):
    """A record the residual pass held back, and a steward's decision on it.

    Keyed by version and record position, so a decision outlives rescans of the same content.
    The preview is the redacted record with every digit shown as "#": enough to judge, not
    the value.
    """

    __tablename__ = "pii_quarantine"
    __table_args__ = (sa.UniqueConstraint("version_id", "record_index"),)

    id: int | None = SQLField(default=None, primary_key=True)
    version_id: int = SQLField(foreign_key="dataset_versions.id", nullable=False, index=True)
    record_index: int = SQLField(nullable=False)
    receipt_id: int | None = SQLField(default=None, foreign_key="scan_receipts.id")
    residuals: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    preview: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    # Each span that held the record: its kind, and the span with some context, digits as #.
    spans: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    decision: str | None = SQLField(default=None, max_length=8)
    comment: str | None = SQLField(default=None, max_length=500)
    decided_by: str | None = SQLField(default=None, max_length=63)
    decided_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class QuarantineRead(BaseModel):
    record_index: int = Field(
        description="The record's position in the version (from 0): the `{record}` a keep or "
        "drop decision names."
    )
    residuals: dict[str, Any]
    preview: dict[str, Any]
    spans: list[Any]
    decision: str | None
    comment: str | None
    decided_by: str | None
    decided_at: dt.datetime | None


class QuarantineList(BaseModel):
    items: list[QuarantineRead]


class QuarantineDecide(BaseModel):
    model_config = {"extra": "forbid"}

    decision: Literal["keep", "drop"]
    comment: str | None = Field(default=None, max_length=500)


class LabelPath(BaseModel):
    dataset_id: int = Field(ge=1, le=INT_MAX)
    number: int = Field(ge=1, le=INT_MAX)
    position: int = Field(ge=0, le=INT_MAX)


class LabelCreate(BaseModel):
    """A steward's label: how many personal values the sanitized record still shows."""

    model_config = {"extra": "forbid"}

    missed: int = Field(ge=0, le=1000)
    comment: str | None = Field(default=None, max_length=500)


class LabelItem(BaseModel):
    position: int
    text: dict[str, Any]
    redacted: int
    missed: int | None
    labelled_by: str | None


class LabelSample(BaseModel):
    receipt: int
    items: list[LabelItem]
    estimate: dict[str, Any] | None


class QuarantinePath(BaseModel):
    dataset_id: int = Field(ge=1, le=INT_MAX)
    number: int = Field(ge=1, le=INT_MAX)
    record: int = Field(
        ge=0, le=INT_MAX, description="The record's index in the version (`record_index`)."
    )


class ReceiptRead(BaseModel):
    id: int
    dataset_version: str
    rules_hash: str
    content_hash: str
    scanner: dict[str, Any]
    counts: dict[str, Any]
    records_total: int
    records_redacted: int
    records_dropped: int
    records_from_cache: int
    records_quarantined: int
    records_kept: int
    canaries: dict[str, Any]
    canary_recall: float | None
    recall_estimate: dict[str, Any] | None
    label_sample: list[Any]
    reasons: list[Any]
    verdict: str
    error: str | None
    samples: list[Any]
    sanitized_records: int
    sanitized_hash: str | None
    sanitized_shards: list[Any] = Field(
        default_factory=list,
        description="Records of the sanitized view in each shard, in order (empty: one blob).",
    )
    seed: str | None = Field(
        default=None,
        description="What every random draw of the scan (canaries, samples) came from.",
    )
    digest: str | None = Field(
        default=None,
        description="SHA-256 of the receipt's canonical body: equal for equal content, rules and "
        "scanner, however many workers scanned it.",
    )
    current_rules: bool
    created_by: str
    created_at: dt.datetime


class ReceiptList(BaseModel):
    items: list[ReceiptRead]
