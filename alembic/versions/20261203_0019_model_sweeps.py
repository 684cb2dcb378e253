"""model sweeps: the same data trained on several bases, compared

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 07:00:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db


revision: str = "0019"
down_revision: Union[str, Sequence[str], None] = "0018"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "model_sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("family_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("runs", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", governance.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["model_families.id"],
            name=op.f("fk_model_sweeps_family_id_model_families"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_sweeps")),
        sa.UniqueConstraint("uid", name=op.f("uq_model_sweeps_uid")),
    )
    op.create_index("ix_model_sweeps_family_id", "model_sweeps", ["family_id"])


def downgrade() -> None:
    op.drop_index("ix_model_sweeps_family_id", table_name="model_sweeps")
    op.drop_table("model_sweeps")
