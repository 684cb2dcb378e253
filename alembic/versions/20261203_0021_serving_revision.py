"""serving revision: a family's counter of changes to its versions, kept by the database

Every insert, update or delete of a model version adds one to its family's
serving_revision, in the same transaction, by a trigger (so a change made by any writer,
including SQL typed by hand, is seen). The gateway keeps a family's serving variants
between queries and reads them again when the revision it gets with the family differs.
A later migration that rebuilds model_versions on SQLite (batch mode copies the table)
must create the three triggers again.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 10:30:00
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0021"
down_revision: Union[str, Sequence[str], None] = "0020"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BUMP = "UPDATE model_families SET serving_revision = serving_revision + 1 WHERE id IN ({ids})"

POSTGRES_FUNCTION = f"""
CREATE FUNCTION model_versions_serving_revision() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    {BUMP.format(ids="OLD.family_id")};
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    {BUMP.format(ids="OLD.family_id, NEW.family_id")};
  ELSE
    {BUMP.format(ids="NEW.family_id")};
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql
"""

SQLITE_TRIGGERS = {
    "model_versions_serving_revision_insert": ("AFTER INSERT", ["NEW"]),
    "model_versions_serving_revision_update": ("AFTER UPDATE", ["OLD", "NEW"]),
    "model_versions_serving_revision_delete": ("AFTER DELETE", ["OLD"]),
}


def upgrade() -> None:
    op.add_column(
        "model_families",
        sa.Column("serving_revision", sa.Integer(), server_default="0", nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(
            "CREATE TRIGGER model_versions_serving_revision "
            "AFTER INSERT OR UPDATE OR DELETE ON model_versions "
            "FOR EACH ROW EXECUTE FUNCTION model_versions_serving_revision()"
        )
    else:
        for name, (when, rows) in SQLITE_TRIGGERS.items():
            body = BUMP.format(ids=", ".join(f"{row}.family_id" for row in rows))
            op.execute(f"CREATE TRIGGER {name} {when} ON model_versions BEGIN {body}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER model_versions_serving_revision ON model_versions")
        op.execute("DROP FUNCTION model_versions_serving_revision()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("model_families") as batch:
        batch.drop_column("serving_revision")
