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
    with op.batch_alter_table("model_families") as batch:
        batch.add_column(sa.Column("privacy", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_families") as batch:
        batch.drop_column("privacy")
