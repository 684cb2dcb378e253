"""Set up an instance directory: its keys, its database schema and the admin principal."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from governance import crypto, runtime
from governance.accounts import service as accounts
from governance.accounts.models import PrincipalKind
from governance.audit.service import Actor, log_verifier_key
from governance.audit.witnessing import ensure_local_witness
from governance.authz.policy import policy_hash
from governance.config import ALEMBIC_DIR
from governance.db import Database
from governance.families.signing import ensure_model_signing_key


@dataclass
class InitReport:
    """What `govern init` did; an empty `created` list means it changed nothing."""

    home: str
    database_url: str
    created: list[str] = field(default_factory=list)


def alembic_config(database_url: str) -> AlembicConfig:
    """Return an Alembic configuration for the project's migrations and this database."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    # Passed as an attribute, not an ini option, so URLs with '%' need no escaping.
    cfg.attributes["database_url"] = database_url
    return cfg


def schema_revision(db: Database) -> str | None:
    """Return the Alembic revision the database is at, or None when it has no schema."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def head_revision() -> str | None:
    """Return the newest migration revision shipped with the code (read once a process: the
    migrations shipped do not change under it, and reading them parses every script)."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def migrate(database_url: str) -> bool:
    """Upgrade the database to the newest revision; return True when anything ran."""
    db = runtime.database_for(database_url)
    try:
        return upgrade(db)
    finally:
        db.dispose()


def upgrade(db: Database) -> bool:
    """Upgrade this database to the newest revision; return True when anything ran."""
    if schema_revision(db) == head_revision():
        return False
    command.upgrade(alembic_config(db.url), "head")
    return True


def init_instance(config: dict[str, Any]) -> InitReport:
    """Create what the instance lacks; running it again changes nothing."""
    home = Path(config["GOVERNANCE_HOME"])
    report = InitReport(home=str(home), database_url=redact_url(config["GOVERNANCE_DATABASE_URL"]))
    if not home.exists():
        report.created.append("instance directory")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    keys = crypto.keys_dir(home)
    keys.mkdir(mode=0o700, exist_ok=True)
    os.chmod(keys, 0o700)
    if not config.get("GOVERNANCE_MASTER_KEY") and crypto.ensure_master_key(home):
        report.created.append("master key")
    if crypto.ensure_signing_key(home):
        report.created.append("signing key")
    log_key = log_verifier_key(crypto.load_signing_key(home), config.get("AUDIT_ORIGIN") or None)
    if ensure_local_witness(home, log_key):
        report.created.append("local witness")
    if ensure_model_signing_key(home):
        report.created.append("model-signing key")
    db = runtime.database_for(config)
    try:
        if upgrade(db):
            report.created.append("database schema")
        restrict_database_files(config["GOVERNANCE_DATABASE_URL"])
        with db.unit_of_work() as session:
            actor = Actor("system:init", None, policy_hash(config["GOVERNANCE_POLICY_DIR"]))
            if accounts.ensure_principal(
                session, accounts.ADMIN_PRINCIPAL, PrincipalKind.USER, actor=actor
            ):
                report.created.append("admin principal")
    finally:
        db.dispose()
    return report


def restrict_database_files(url: str) -> None:
    """Make an SQLite database and its journal files owner-only (0600)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(parsed.database + suffix)
        if path.exists():
            os.chmod(path, 0o600)


def redact_url(url: str) -> str:
    """Hide the password of a database URL."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
