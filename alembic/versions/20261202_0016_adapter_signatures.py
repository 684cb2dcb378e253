"""adapter signatures: the OpenSSF model-signing bundle made at promotion

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 19:45:00

Versions promoted before this revision have no signature, and the gateway serves no unsigned
adapter: promote them again (a new version) to have them signed.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0016"
down_revision: Union[str, Sequence[str], None] = "0015"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("adapter_signature", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("adapter_signature")
