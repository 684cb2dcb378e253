"""Jobs: indexes that make a claim cost the same however many jobs wait

A version's scan queues one job per shard (a terabyte: about 130,000). A claim read every
queued job to rank the queues' heads (a window over all of them) and every finished one to
know when each queue was last served, so its cost grew with the queue and a scan's claims
together grew with its square (measured: 0.34 s a claim with 100,000 queued on PostgreSQL).
It now reads the heads of each queue and their last service through these two indexes.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 02:00:00
"""

from typing import Sequence, Union

from alembic import op


revision: str = "0027"
down_revision: Union[str, Sequence[str], None] = "0026"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_jobs_queue", "jobs", ["state", "kind", "domain", "id"], unique=False)
    op.create_index("ix_jobs_served", "jobs", ["kind", "domain", "heartbeat_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_served", table_name="jobs")
    op.drop_index("ix_jobs_queue", table_name="jobs")
