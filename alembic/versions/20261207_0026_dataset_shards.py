"""Shards: a version stored in bounded pieces, and a scan mapped over them

dataset_shards holds each piece of a version (its first record, record count, bytes, Merkle
root, sealing name and blob key); every existing version becomes one shard, its whole blob
under its own uid, so nothing is rewritten. dataset_versions gains `shards`.

scan_runs holds a scan in progress (its seed, the sanitized view's wrapped key, the job that
coordinates it) and scan_shard_results what each shard's scan found. scan_receipts gains
`sanitized_shards` (the view's record count per shard; empty for views stored whole),
`seed` and `digest` (the SHA-256 of the receipt's canonical body).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 01:00:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import governance.db


revision: str = "0026"
down_revision: Union[str, Sequence[str], None] = "0025"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("shards", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "dataset_shards",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "version_id",
            sa.Integer(),
            sa.ForeignKey("dataset_versions.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("first_record", sa.BigInteger(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("plaintext_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("blob_uid", sa.String(length=64), nullable=False, unique=True),
        sa.Column("blob_key", sa.String(length=200), nullable=True),
        sa.UniqueConstraint("version_id", "ordinal"),
    )
    # Every version stored so far is one shard: its whole blob, sealed under its own uid.
    op.execute(
        "INSERT INTO dataset_shards (version_id, ordinal, first_record, record_count, "
        "plaintext_bytes, content_hash, blob_uid, blob_key) "
        "SELECT id, 0, 0, record_count, plaintext_bytes, content_hash, uid, blob_key "
        "FROM dataset_versions"
    )
    with op.batch_alter_table("scan_receipts") as batch:
        batch.add_column(
            sa.Column("sanitized_shards", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("seed", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
    op.create_table(
        "scan_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(length=32), nullable=False, unique=True),
        sa.Column(
            "version_id",
            sa.Integer(),
            sa.ForeignKey("dataset_versions.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("domain_id", sa.Integer(), sa.ForeignKey("domains.id"), nullable=False),
        sa.Column("rules_hash", sa.String(length=64), nullable=False),
        sa.Column("scanner", sa.JSON(), nullable=False),
        sa.Column("seed", sa.String(length=64), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("job_uid", sa.String(length=32), nullable=True, index=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("receipt_id", sa.Integer(), sa.ForeignKey("scan_receipts.id"), nullable=True),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", governance.db.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "scan_shard_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("scan_runs.id"), nullable=False, index=True
        ),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("sanitized_records", sa.Integer(), nullable=False),
        sa.Column("sanitized_root", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", governance.db.UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "ordinal"),
    )


def downgrade() -> None:
    op.drop_table("scan_shard_results")
    op.drop_table("scan_runs")
    with op.batch_alter_table("scan_receipts") as batch:
        batch.drop_column("digest")
        batch.drop_column("seed")
        batch.drop_column("sanitized_shards")
    op.drop_table("dataset_shards")
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("shards")
