"""lifecycle webhooks: cursors of the log's consumers, deliveries and the delivery log

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 22:00:00

The webhooks' cursor starts at the log's current size: an instance that upgrades sends events
for what happens from now on, not its whole history. (The OpenLineage emitter's starts at 0
when first configured: lineage wants the whole history.)
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db


revision: str = "0017"
down_revision: Union[str, Sequence[str], None] = "0016"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "audit_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_audit_cursors")),
    )
    op.execute(
        "INSERT INTO audit_cursors (name, audit_seq) SELECT 'webhooks', size FROM audit_head"
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=40), nullable=False),
        sa.Column("subscriber", sa.String(length=63), nullable=False),
        sa.Column("domain", sa.String(length=63), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", governance.db.UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", governance.db.UTCDateTime(), nullable=False),
        sa.Column("lease_until", governance.db.UTCDateTime(), nullable=True),
        sa.Column("delivered_at", governance.db.UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "subscriber", "audit_seq", name=op.f("uq_webhook_deliveries_subscriber")
        ),
        sa.UniqueConstraint("uid", name=op.f("uq_webhook_deliveries_uid")),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_index(
        "ix_webhook_deliveries_domain_created", "webhook_deliveries", ["domain", "created_at"]
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", governance.db.UTCDateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
        sa.UniqueConstraint("delivery_id", "number", name=op.f("uq_webhook_attempts_delivery_id")),
    )
    op.create_index(op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_attempts_delivery_id"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_domain_created", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("audit_cursors")
