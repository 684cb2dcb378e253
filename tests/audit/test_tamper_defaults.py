"""A freshly initialized instance, with nothing configured, against an insider with database
access: `govern init` makes a local witness outside the database, so truncation, a restored
older copy of the database and deleted checkpoints are caught; a checkpoint is never signed
over a tampered tail; a replaced public key is refused; without any witness `verify` says
what it cannot see."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from tests.audit.test_witnessed_log import grow, sql, truncate
from tests.test_cli import govern


def environment(home) -> dict:
    env = {
        **os.environ,
        "GOVERNANCE_HOME": str(home),
        "GOVERNANCE_DATABASE_URL": f"sqlite:///{home / 'governance.db'}",
    }
    env.pop("AUDIT_WITNESSES", None)
    return env


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One `govern init` with nothing configured, two principals and a checkpoint; each test
    gets a copy (database, keys and local witness together)."""
    home = tmp_path_factory.mktemp("template") / "home"
    env = environment(home)
    made = govern(env, "init")
    assert made.returncode == 0 and "local witness" in made.stdout, made.stdout + made.stderr
    grow({"env": env}, "casey", "priya")
    with sqlite3.connect(home / "governance.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return home


@pytest.fixture
def instance(template, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return {"env": environment(home), "home": home, "tmp": tmp_path}


def size_of(world) -> int:
    with sqlite3.connect(world["home"] / "governance.db") as db:
        return db.execute("SELECT size FROM audit_head").fetchone()[0]


def test_a_fresh_instance_verifies_with_its_local_witness(instance):
    verified = govern(instance["env"], "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "local-witness/" in verified.stdout and "no witness" not in verified.stderr


def test_truncation_is_caught_by_default(instance):
    size = size_of(instance)
    grow(instance, "sam", "lee")
    truncate(instance, size)
    verified = govern(instance["env"], "audit", "verify")
    assert verified.returncode == 1 and "truncated or rolled back" in verified.stderr


def test_a_restored_older_database_is_caught_by_default(instance):
    database = instance["home"] / "governance.db"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    copy = instance["tmp"] / "old.db"
    shutil.copy(database, copy)
    grow(instance, "sam", "lee")
    for suffix in ("-wal", "-shm"):
        (instance["home"] / f"governance.db{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, database)
    verified = govern(instance["env"], "audit", "verify")
    assert verified.returncode == 1 and "truncated or rolled back" in verified.stderr


def test_deleting_every_checkpoint_then_editing_is_caught_by_default(instance):
    sql(
        instance,
        ("DELETE FROM audit_cosignatures",),
        ("DELETE FROM audit_checkpoints",),
        ("UPDATE audit_entries SET principal = 'mallory' WHERE seq = 2",),
    )
    verified = govern(instance["env"], "audit", "verify")
    assert verified.returncode == 1, verified.stdout


def test_a_checkpoint_is_never_signed_over_a_tampered_tail(instance):
    assert govern(instance["env"], "principal", "create", "sam").returncode == 0
    size = size_of(instance)
    sql(instance, ("UPDATE audit_entries SET principal = 'mallory' WHERE seq = ?", size))
    refused = govern(instance["env"], "audit", "checkpoint")
    assert refused.returncode != 0 and f"entry {size} was altered" in refused.stderr
    with sqlite3.connect(instance["home"] / "governance.db") as db:
        assert db.execute(
            "SELECT count(*) FROM audit_checkpoints WHERE tree_size >= ?", (size,)
        ).fetchone() == (0,)


def test_a_replaced_public_key_is_refused(instance):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key()
    (instance["home"] / "keys" / "signing.pub").write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    verified = govern(instance["env"], "audit", "verify")
    assert verified.returncode != 0 and "signing.pub" in verified.stderr


def test_without_any_witness_verify_says_what_it_cannot_see(instance):
    env = {**instance["env"], "AUDIT_WITNESSES": "none"}
    verified = govern(env, "audit", "verify")
    assert verified.returncode == 0
    assert "no witness" in verified.stderr and "cannot be told" in verified.stderr
