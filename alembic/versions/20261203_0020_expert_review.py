"""expert review: sampled conversations of a version, and signed expert and judge scores

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 08:00:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db


revision: str = "0020"
down_revision: Union[str, Sequence[str], None] = "0019"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("conversation", sa.String(length=63), nullable=False),
        sa.Column("transcript", sa.JSON(), nullable=False),
        sa.Column("created_at", governance.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_review_items_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_items")),
        sa.UniqueConstraint("uid", name=op.f("uq_review_items_uid")),
        sa.UniqueConstraint(
            "version_id", "conversation", name=op.f("uq_review_items_version_id")
        ),
    )
    op.create_index("ix_review_items_version_id", "review_items", ["version_id"])
    op.create_table(
        "review_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("criterion", sa.String(length=63), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.String(length=2000), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", governance.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["review_items.id"], name=op.f("fk_review_scores_item_id_review_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_scores")),
        sa.UniqueConstraint(
            "item_id", "source", "reviewer", "criterion", name=op.f("uq_review_scores_item_id")
        ),
    )
    op.create_index("ix_review_scores_item_id", "review_scores", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_review_scores_item_id", table_name="review_scores")
    op.drop_table("review_scores")
    op.drop_index("ix_review_items_version_id", table_name="review_items")
    op.drop_table("review_items")
