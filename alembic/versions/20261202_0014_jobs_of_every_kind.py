"""jobs of every kind in the job table: scans, evaluations and exports beside training

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 06:00:00

"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401

import governance.db  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: Union[str, Sequence[str], None] = "0013"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="train")
        )
        batch_op.add_column(sa.Column("subject", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("domain", sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column("requested_by", sa.String(length=63), nullable=True))
        batch_op.add_column(
            sa.Column("params", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(
            sa.Column("result", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.alter_column("version_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_index("ix_training_jobs_kind_state", ["kind", "state"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM training_jobs WHERE kind <> 'train'")
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_training_jobs_kind_state")
        batch_op.alter_column("version_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("result")
        batch_op.drop_column("params")
        batch_op.drop_column("requested_by")
        batch_op.drop_column("domain")
        batch_op.drop_column("subject")
        batch_op.drop_column("kind")
