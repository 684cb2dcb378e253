"""PII gate: canary recall, residual quarantine, and a scan cache keyed by scanner

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 03:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401

import governance.db  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('scan_receipts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('records_quarantined', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('records_kept', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('canaries', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('canary_recall', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('reasons', sa.JSON(), nullable=False, server_default='[]'))
    with op.batch_alter_table('scan_receipts', schema=None) as batch_op:
        batch_op.alter_column('records_quarantined', server_default=None)
        batch_op.alter_column('records_kept', server_default=None)
        batch_op.alter_column('canaries', server_default=None)
        batch_op.alter_column('reasons', server_default=None)
    op.create_table('pii_quarantine',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('record_index', sa.Integer(), nullable=False),
    sa.Column('receipt_id', sa.Integer(), nullable=True),
    sa.Column('residuals', sa.JSON(), nullable=False),
    sa.Column('preview', sa.JSON(), nullable=False),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=True),
    sa.Column('decided_at', governance.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', governance.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['receipt_id'], ['scan_receipts.id'], name=op.f('fk_pii_quarantine_receipt_id_scan_receipts')),
    sa.ForeignKeyConstraint(['version_id'], ['dataset_versions.id'], name=op.f('fk_pii_quarantine_version_id_dataset_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pii_quarantine')),
    sa.UniqueConstraint('version_id', 'record_index', name=op.f('uq_pii_quarantine_version_id')),
    )
    with op.batch_alter_table('pii_quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pii_quarantine_version_id'), ['version_id'], unique=False)
    # The cache now holds findings of whole records under a scanner version; the old per-field
    # rows are derived data of another scanner and are dropped.
    op.execute("DELETE FROM scan_cache")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('pii_quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pii_quarantine_version_id'))
    op.drop_table('pii_quarantine')
    with op.batch_alter_table('scan_receipts', schema=None) as batch_op:
        batch_op.drop_column('reasons')
        batch_op.drop_column('canary_recall')
        batch_op.drop_column('canaries')
        batch_op.drop_column('records_kept')
        batch_op.drop_column('records_quarantined')
    op.execute("DELETE FROM scan_cache")
