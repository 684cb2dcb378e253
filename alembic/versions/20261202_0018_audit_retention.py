"""retention: pruned audit entries keep their leaf hash; pruned receipts their counts

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 22:30:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db


revision: str = "0018"
down_revision: Union[str, Sequence[str], None] = "0017"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pruned_at", governance.db.UTCDateTime(), nullable=True))
    with op.batch_alter_table("scan_receipts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pruned_at", governance.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scan_receipts", schema=None) as batch_op:
        batch_op.drop_column("pruned_at")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_column("pruned_at")
