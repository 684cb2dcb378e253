"""sealed sample of unflagged records on scan receipts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 04:00:00

"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401

import governance.db  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: Union[str, Sequence[str], None] = "0012"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("scan_receipts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unflagged_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("scan_receipts", schema=None) as batch_op:
        batch_op.drop_column("unflagged_sealed")
