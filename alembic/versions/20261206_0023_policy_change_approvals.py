"""Approvals: requests about the service itself (policy changes) belong to no data domain

approval_requests.domain_id becomes nullable: a request of kind `policy-change` is made in
the policy's `system` domain, which has no row in `domains`.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 16:00:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0023"
down_revision: Union[str, Sequence[str], None] = "0022"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("approval_requests") as batch:
        batch.alter_column("domain_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM approval_decisions WHERE request_id IN "
               "(SELECT id FROM approval_requests WHERE domain_id IS NULL)")
    op.execute("DELETE FROM approval_requests WHERE domain_id IS NULL")
    with op.batch_alter_table("approval_requests") as batch:
        batch.alter_column("domain_id", existing_type=sa.Integer(), nullable=False)
