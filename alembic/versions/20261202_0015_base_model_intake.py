"""base-model intake: source, license, file hashes, model card, withdrawal

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 19:00:00

Base models registered before intake existed keep working for the versions already built on
them, but get no source or license: they show up as unreviewed, and no family may start a new
version on one until a `base-model-use` approval exists for its domain.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db  # noqa: F401


revision: str = "0015"
down_revision: Union[str, Sequence[str], None] = "0014"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=500), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("license", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("files", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(sa.Column("card_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="active")
        )
        batch_op.add_column(sa.Column("withdrawn_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("withdrawn_at", governance.db.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        for column in (
            "withdrawn_at",
            "withdrawn_reason",
            "status",
            "card_sha256",
            "files",
            "license",
            "source",
        ):
            batch_op.drop_column(column)
