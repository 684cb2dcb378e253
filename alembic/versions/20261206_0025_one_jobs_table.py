"""One jobs table: training_jobs becomes jobs, every row kept

Jobs of every kind (training, scans, gates, exports, policy reviews) already shared the table;
it now carries the name of what it holds, with its constraints and indexes renamed to match.
PostgreSQL renames in place (the id sequence too). SQLite cannot rename constraints, so the
table is made anew under the new names, the rows copied with their ids, and the old one
dropped.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 20:20:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db


revision: str = "0025"
down_revision: Union[str, Sequence[str], None] = "0024"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = (
    "id, uid, kind, version_id, subject, domain, requested_by, params, result, state, executor, "
    "attempt, max_attempts, worker, token_hash, lease_expires_at, heartbeat_at, progress, error, "
    "created_at, finished_at"
)


def create(name: str) -> None:
    """The table as the models describe it, under `name`'s constraint and index names."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False, server_default="train"),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("domain", sa.String(length=63), nullable=True),
        sa.Column("requested_by", sa.String(length=63), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("result", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("executor", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", governance.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", governance.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", governance.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", governance.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=f"fk_{name}_version_id_model_versions",
        ),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.UniqueConstraint("uid", name=f"uq_{name}_uid"),
        sa.UniqueConstraint("version_id", name=f"uq_{name}_version_id"),
    )
    op.create_index(f"ix_{name}_state", name, ["state"], unique=False)
    op.create_index(f"ix_{name}_kind_state", name, ["kind", "state"], unique=False)


def rename(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.rename_table(old, new)
        for suffix in ("uid", "version_id"):
            op.execute(f"ALTER TABLE {new} RENAME CONSTRAINT uq_{old}_{suffix} TO uq_{new}_{suffix}")
        op.execute(f"ALTER TABLE {new} RENAME CONSTRAINT pk_{old} TO pk_{new}")
        op.execute(
            f"ALTER TABLE {new} RENAME CONSTRAINT fk_{old}_version_id_model_versions "
            f"TO fk_{new}_version_id_model_versions"
        )
        op.execute(f"ALTER INDEX ix_{old}_state RENAME TO ix_{new}_state")
        op.execute(f"ALTER INDEX ix_{old}_kind_state RENAME TO ix_{new}_kind_state")
        op.execute(f"ALTER SEQUENCE {old}_id_seq RENAME TO {new}_id_seq")
        return
    create(new)
    op.execute(f"INSERT INTO {new} ({COLUMNS}) SELECT {COLUMNS} FROM {old}")
    op.drop_index(f"ix_{old}_kind_state", table_name=old)
    op.drop_index(f"ix_{old}_state", table_name=old)
    op.drop_table(old)


def upgrade() -> None:
    rename("training_jobs", "jobs")


def downgrade() -> None:
    rename("jobs", "training_jobs")
