"""scan cache keyed by the hash of each text field

The cache is derived data (offsets and types found under a rule set), so it is dropped and
recreated rather than converted: the first scan after the upgrade fills it again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _create(key: str) -> None:
    op.create_table('scan_cache',
    sa.Column(key, sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('rules_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('findings', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint(key, 'rules_hash', name=op.f('pk_scan_cache'))
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_table('scan_cache')
    _create('text_hash')


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('scan_cache')
    _create('record_hash')
