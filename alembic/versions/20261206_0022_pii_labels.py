"""PII gate: the spans that held a record, a steward's comment, and a labelled sample

pii_quarantine gains `spans` (each held span's kind, with the span and a little context,
digits shown as #) and `comment` (the steward's reason to keep or drop). scan_receipts
gains `label_sample` (positions in the sanitized view drawn at random for a steward to
label, with the values redacted in each), `label_sealed` (those records' text, digits as #,
sealed under the sanitized view's key and shredded with it) and `recall_estimate` (the
recall estimated from the labels, with its 95% Wilson lower bound). pii_recall_labels holds
one steward's label per sampled record: how many values the redaction caught and how many
it missed.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 09:00:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db


revision: str = "0022"
down_revision: Union[str, Sequence[str], None] = "0021"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("pii_quarantine") as batch:
        batch.add_column(sa.Column("spans", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("comment", sa.String(length=500), nullable=True))
    with op.batch_alter_table("scan_receipts") as batch:
        batch.add_column(
            sa.Column("label_sample", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("label_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("recall_estimate", sa.JSON(), nullable=True))
    op.create_table(
        "pii_recall_labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "receipt_id",
            sa.Integer(),
            sa.ForeignKey("scan_receipts.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("redacted", sa.Integer(), nullable=False),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("comment", sa.String(length=500), nullable=True),
        sa.Column("labelled_by", sa.String(length=63), nullable=False),
        sa.Column("labelled_at", governance.db.UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("receipt_id", "position"),
    )


def downgrade() -> None:
    op.drop_table("pii_recall_labels")
    with op.batch_alter_table("scan_receipts") as batch:
        batch.drop_column("recall_estimate")
        batch.drop_column("label_sealed")
        batch.drop_column("label_sample")
    with op.batch_alter_table("pii_quarantine") as batch:
        batch.drop_column("comment")
        batch.drop_column("spans")
