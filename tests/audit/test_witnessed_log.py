"""An insider with database access against a witnessed log: truncation, rollback and a replaced
key are caught by `govern audit verify`, refused by export, and caught by the offline verifier
given what the witness last cosigned."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.log import canonical
from audit.merkle import leaf_hash


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def govern(env: dict, *args: str) -> subprocess.CompletedProcess:
    return run(env, "-m", "governance.cli", *args)


@pytest.fixture
def witnessed(tmp_path):
    """An instance whose checkpoints a file-backed witness in another directory cosigns."""
    home = tmp_path / "home"
    env = {
        **os.environ,
        "GOVERNANCE_HOME": str(home),
        "GOVERNANCE_DATABASE_URL": f"sqlite:///{home / 'governance.db'}",
        "AUDIT_TRUST_FILE": str(tmp_path / "trusted.json"),
    }
    env.pop("AUDIT_WITNESSES", None)
    assert govern(env, "init").returncode == 0
    vkey = govern(env, "audit", "public-key", "--format", "note").stdout.strip()
    witness = tmp_path / "witness"
    made = run(
        env, "-m", "audit.witness", "init", str(witness), "--name", "w.test/1", "--log-key", vkey
    )
    assert made.returncode == 0, made.stderr
    env["AUDIT_WITNESSES"] = f"dir:{witness}"
    for name in ("casey", "priya"):
        assert govern(env, "principal", "create", name).returncode == 0
    note = govern(env, "audit", "checkpoint", "--format", "note")
    assert note.returncode == 0 and "\u2014 w.test/1 " in note.stdout, note.stderr
    return {
        "env": env,
        "home": home,
        "witness": witness,
        "vkey": vkey,
        "tmp": tmp_path,
        "witness_key": made.stdout.strip(),
    }


def grow(world, *names: str) -> None:
    for name in names:
        assert govern(world["env"], "principal", "create", name).returncode == 0
    assert govern(world["env"], "audit", "checkpoint").returncode == 0


def sql(world, *statements) -> None:
    with sqlite3.connect(world["home"] / "governance.db") as db:
        for statement in statements:
            if isinstance(statement, tuple):
                db.execute(statement[0], statement[1:])
            else:
                db.execute(statement)


def latest_from_witness(world) -> Path:
    origin = world["vkey"].split("+", 1)[0]
    result = run(world["env"], "-m", "audit.witness", "latest", str(world["witness"]), origin)
    assert result.returncode == 0, result.stderr
    path = world["tmp"] / "witnessed.note"
    path.write_text(result.stdout)
    return path


def verify_against_witness(world, bundle: str) -> subprocess.CompletedProcess:
    """The offline verifier, given what the witness cosigned last (fetched from it)."""
    return run(
        world["env"],
        "-m",
        "audit",
        "verify",
        str(world["tmp"] / bundle),
        "--trust-bundle-key",
        "--witness-key",
        world["witness_key"],
        "--witnessed",
        str(latest_from_witness(world)),
    )


def export(world, name: str) -> subprocess.CompletedProcess:
    return govern(
        world["env"], "audit", "export", "--format", "bundle", "--out", str(world["tmp"] / name)
    )


def test_an_honest_witnessed_log_verifies_everywhere(witnessed):
    verified = govern(witnessed["env"], "audit", "verify")
    assert verified.returncode == 0 and "witnesses: w.test/1 at" in verified.stdout
    assert export(witnessed, "b.tar.gz").returncode == 0
    key = witnessed["tmp"] / "log.pem"
    key.write_text(govern(witnessed["env"], "audit", "public-key").stdout)
    offline = run(
        witnessed["env"],
        "-m",
        "audit",
        "verify",
        str(witnessed["tmp"] / "b.tar.gz"),
        "--public-key",
        str(key),
        "--witness-key",
        witnessed["witness_key"],
        "--witnessed",
        str(latest_from_witness(witnessed)),
        "--require-witnesses",
        "1",
    )
    assert offline.returncode == 0, offline.stderr
    assert "witnessed by w.test/1" in offline.stdout


def truncate(world, size: int) -> None:
    """What an insider does to hide entries: cut the log back to `size` entries, with every
    newer checkpoint and cosignature."""
    sql(
        world,
        ("DELETE FROM audit_entries WHERE seq > ?", size),
        ("DELETE FROM audit_checkpoints WHERE tree_size > ?", size),
        ("DELETE FROM audit_cosignatures WHERE tree_size > ?", size),
        ("UPDATE audit_head SET size = ?", size),
    )


def test_truncation_with_the_newer_checkpoints_deleted_is_caught(witnessed):
    assert export(witnessed, "early.tar.gz").returncode == 0
    size = int(
        govern(witnessed["env"], "audit", "checkpoint", "--format", "json")
        .stdout.split('"tree_size": ')[1]
        .split(",")[0]
    )
    grow(witnessed, "sam", "lee")
    truncate(witnessed, size)
    verified = govern(witnessed["env"], "audit", "verify")
    assert verified.returncode == 1 and "truncated or rolled back" in verified.stderr
    refused = export(witnessed, "late.tar.gz")
    assert refused.returncode == 1 and "truncated or rolled back" in refused.stderr
    assert not (witnessed["tmp"] / "late.tar.gz").exists()
    # Offline: the older bundle is smaller than what the witness says it cosigned.
    offline = verify_against_witness(witnessed, "early.tar.gz")
    assert offline.returncode == 1 and "truncated or rolled back" in offline.stderr


def test_restoring_an_older_copy_of_the_database_is_caught(witnessed):
    database = witnessed["home"] / "governance.db"
    shutil.copy(database, witnessed["tmp"] / "backup.db")
    assert export(witnessed, "old.tar.gz").returncode == 0
    grow(witnessed, "sam")
    shutil.copy(witnessed["tmp"] / "backup.db", database)
    verified = govern(witnessed["env"], "audit", "verify")
    assert verified.returncode == 1 and "truncated or rolled back" in verified.stderr
    assert export(witnessed, "after.tar.gz").returncode == 1
    offline = verify_against_witness(witnessed, "old.tar.gz")
    assert offline.returncode == 1 and "truncated or rolled back" in offline.stderr


def test_truncation_that_keeps_the_checkpoints_is_refused_by_export(witnessed):
    grow(witnessed, "sam")
    with sqlite3.connect(witnessed["home"] / "governance.db") as db:
        top = db.execute("SELECT max(seq) FROM audit_entries").fetchone()[0]
        db.execute("DELETE FROM audit_entries WHERE seq > ?", (top - 2,))
        db.execute("UPDATE audit_head SET size = ?", (top - 2,))
    verified = govern(witnessed["env"], "audit", "verify")
    assert verified.returncode == 1
    refused = export(witnessed, "t.tar.gz")
    assert refused.returncode == 1 and "does not verify" in refused.stderr


def test_a_rewritten_log_under_a_replaced_key_is_caught(witnessed):
    home = witnessed["home"]
    sql(witnessed, "DELETE FROM audit_cosignatures", "DELETE FROM audit_checkpoints")
    # The insider rewrites entry 2 and recomputes its hash exactly as the service would.
    from sqlmodel import Session, create_engine, select

    from governance.audit.models import AuditEntry
    from governance.audit.service import row_entry

    engine = create_engine(f"sqlite:///{home / 'governance.db'}")
    with Session(engine) as session:
        row = session.exec(select(AuditEntry).where(AuditEntry.seq == 2)).one()
        row.principal = "nobody"
        row.leaf_hash = leaf_hash(canonical(row_entry(row))).hex()
        session.add(row)
        session.commit()
    engine.dispose()
    (home / "signing.key").write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    verified = govern(witnessed["env"], "audit", "verify")
    assert verified.returncode == 1 and "w.test/1" in verified.stderr, verified.stdout
    assert export(witnessed, "forged.tar.gz").returncode == 1


def test_the_offline_verifier_pins_the_log_key(witnessed, tmp_path):
    assert export(witnessed, "b.tar.gz").returncode == 0
    bundle = str(witnessed["tmp"] / "b.tar.gz")
    env = witnessed["env"]
    unpinned = run(env, "-m", "audit", "verify", bundle)
    assert unpinned.returncode == 1 and "not pinned" in unpinned.stderr
    key = tmp_path / "log.vkey"
    key.write_text(witnessed["vkey"])
    pinned = run(env, "-m", "audit", "trust", str(key))
    assert pinned.returncode == 0, pinned.stderr
    assert run(env, "-m", "audit", "verify", bundle).returncode == 0
    # A bundle whose key was swapped for another is refused under the pin.
    unpacked = tmp_path / "swapped"
    shutil.unpack_archive(bundle, unpacked)
    inner = next(p for p in unpacked.rglob("public_key.pem"))
    inner.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    swapped = run(env, "-m", "audit", "verify", str(inner.parent))
    assert swapped.returncode == 1 and "not pinned" in swapped.stderr


def test_deleting_an_entry_makes_export_refuse_clearly(witnessed):
    sql(witnessed, "DELETE FROM audit_entries WHERE seq = 3")
    refused = export(witnessed, "x.tar.gz")
    assert refused.returncode == 1
    assert "audit entry 3 is missing" in refused.stderr and "Traceback" not in refused.stderr
