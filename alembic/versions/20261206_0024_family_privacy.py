"""Model families: a differential-privacy recipe

model_families gains `privacy` (JSON, nullable): the family's DP training recipe (epsilon,
delta, max_grad_norm, sampling); NULL trains without DP.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 16:10:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0024"
down_revision: Union[str, Sequence[str], None] = "0023"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("model_families", sa.Column("privacy", sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite 3.35+ drops a column in place. Batch mode would copy and rename the table,
        # which the serving-revision triggers on model_versions (0021) forbid.
        op.execute("ALTER TABLE model_families DROP COLUMN privacy")
    else:
        op.drop_column("model_families", "privacy")
