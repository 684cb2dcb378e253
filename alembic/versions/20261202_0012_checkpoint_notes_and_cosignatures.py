"""checkpoint notes and witness cosignatures

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 03:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401

import governance.db  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
    op.create_table('audit_cosignatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('witness', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('line', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_cosignatures')),
    sa.UniqueConstraint('witness', 'tree_size', name=op.f('uq_audit_cosignatures_witness')),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('audit_cosignatures')
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_column('note')
