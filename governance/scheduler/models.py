"""Refresh runs (one per family, tax year and attempt) and the scheduler's leader lease."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from governance.db import UTCDateTime, utcnow


class Step:
    """The pipeline's steps, in order; a run rests on one until it can go on."""

    FIND_DATA = "find-data"
    APPROVE_DATA = "approve-data"
    TRAIN = "train"
    EVALUATE = "evaluate"
    APPROVE_PROMOTION = "approve-promotion"
    PROMOTE = "promote"
    DONE = "done"
    FAILED = "failed"
    ORDER = (FIND_DATA, APPROVE_DATA, TRAIN, EVALUATE, APPROVE_PROMOTION, PROMOTE, DONE)
    FINAL = frozenset({DONE, FAILED})


class RefreshRun(SQLModel, table=True):
    """One refresh of a family for a tax year. The unique (family, tax year, attempt) makes a
    duplicate fire of the schedule harmless: the second insert fails and changes nothing."""

    __tablename__ = "refresh_runs"
    __table_args__ = (
        sa.UniqueConstraint("family_id", "tax_year", "attempt", name="uq_refresh_runs_attempt"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    family_id: int = SQLField(foreign_key="model_families.id", nullable=False, index=True)
    tax_year: int = SQLField(nullable=False)
    attempt: int = SQLField(default=1, nullable=False)
    trigger: str = SQLField(max_length=16, nullable=False)
    step: str = SQLField(max_length=20, nullable=False, index=True)
    waiting_for: str | None = SQLField(default=None, max_length=300)
    version_id: int | None = SQLField(default=None, foreign_key="model_versions.id")
    detail: dict[str, Any] = SQLField(default_factory=dict, sa_type=sa.JSON, nullable=False)
    created_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: dt.datetime = SQLField(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: dt.datetime | None = SQLField(default=None, sa_type=UTCDateTime)


class SchedulerLease(SQLModel, table=True):
    """Who leads: of several `govern scheduler` processes on one database, only the holder of
    an unexpired lease runs jobs; the others wait to take over."""

    __tablename__ = "scheduler_lease"

    name: str = SQLField(primary_key=True, max_length=32)
    holder: str = SQLField(max_length=200, nullable=False)
    expires_at: dt.datetime = SQLField(sa_type=UTCDateTime, nullable=False)
