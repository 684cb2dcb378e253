"""Tables of lifecycle webhooks: what is owed to whom, and every attempt to deliver it."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import UTCDateTime


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    DELIVERED = "delivered"  # the subscriber answered 2xx
    FAILED = "failed"  # out of attempts, or the subscriber is no longer configured


class WebhookDelivery(SQLModel, table=True):
    """One event owed to one subscriber. The payload is the exact body signed and sent (the
    same on every retry, so a receiver deduplicates by `webhook-id`)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("subscriber", "audit_seq"),
        sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_domain_created", "domain", "created_at"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    uid: str = SQLField(max_length=40, nullable=False, sa_column_kwargs={"unique": True})
    subscriber: str = SQLField(max_length=63, nullable=False)
    domain: str = SQLField(max_length=63, nullable=False)
    event_type: str = SQLField(max_length=64, nullable=False)
    audit_seq: int = SQLField(sa_type=sa.BigInteger, nullable=False)
    payload: str = SQLField(sa_type=sa.Text, nullable=False)
    state: str = SQLField(default=DeliveryState.PENDING, max_length=16, nullable=False)
    attempts: int = SQLField(default=0, nullable=False)
    created_at: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
    next_attempt_at: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
    # A sender holds the delivery until then; another sender takes it over after.
    lease_until: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    delivered_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)
    last_status: int | None = SQLField(default=None)
    last_error: str | None = SQLField(default=None, max_length=300)


class WebhookAttempt(SQLModel, table=True):
    """The delivery log: one row per attempt, with what the subscriber answered."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (sa.UniqueConstraint("delivery_id", "number"),)

    id: int | None = SQLField(default=None, primary_key=True)
    delivery_id: int = SQLField(foreign_key="webhook_deliveries.id", nullable=False, index=True)
    number: int = SQLField(nullable=False)
    at: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
    status_code: int | None = SQLField(default=None)
    error: str | None = SQLField(default=None, max_length=300)
    duration_ms: float = SQLField(nullable=False)


class AttemptRead(BaseModel):
    number: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryRead(BaseModel):
    uid: str
    subscriber: str
    domain: str
    event_type: str
    audit_seq: int
    state: str
    attempts: int
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    last_status: int | None
    last_error: str | None
    log: list[AttemptRead] | None = None


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
