"""Scan receipts, and the cache that makes rescans of unchanged records free."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import UTCDateTime, utcnow


class Verdict:
    PASS = "pass"  # noqa: S105 (a verdict, not a password): nothing the rules act on
    REDACTED = "redacted"  # PII replaced or records dropped; the sanitized view may train
    BLOCKED = "blocked"  # a `block` rule fired: the version may not train at all
    ERROR = "error"  # the scanner failed: fail closed

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
    verdict: str = SQLField(max_length=16, nullable=False)
    error: str | None = SQLField(default=None, max_length=500)
    samples: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)
    sanitized_blob_key: str | None = SQLField(default=None, max_length=200)
    sanitized_wrapped_key: bytes | None = SQLField(default=None, sa_type=sa.LargeBinary)
    sanitized_records: int = SQLField(default=0, nullable=False)
    sanitized_hash: str | None = SQLField(default=None, max_length=64)
    created_by: str = SQLField(max_length=63, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ScanCacheEntry(SQLModel, table=True):
    """What one text field held under a rule set: offsets, types and scores, keyed by hashes."""

    __tablename__ = "scan_cache"

    text_hash: str = SQLField(primary_key=True, max_length=64)
    rules_hash: str = SQLField(primary_key=True, max_length=64)
    findings: list[Any] = SQLField(default_factory=list, sa_type=sa.JSON, nullable=False)


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
    verdict: str
    error: str | None
    samples: list[Any]
    sanitized_records: int
    sanitized_hash: str | None
    current_rules: bool
    created_by: str
    created_at: dt.datetime


class ReceiptList(BaseModel):
    items: list[ReceiptRead]
