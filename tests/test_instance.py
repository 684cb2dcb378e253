"""`govern init`: instance directory, keys, schema and admin; idempotent."""

from __future__ import annotations

import stat

import pytest

from governance import crypto
from governance.accounts import service as accounts
from governance.config import load_config
from governance.db import Database
from governance.errors import NotInitialized
from governance.instance import head_revision, init_instance, schema_revision


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_private_instance_and_is_idempotent(tmp_path, database_url):
    home = tmp_path / "fresh"
    settings = load_config({"GOVERNANCE_HOME": str(home), "GOVERNANCE_DATABASE_URL": database_url})
    first = init_instance(settings)
    assert "instance directory" in first.created
    assert "master key" in first.created and "signing key" in first.created
    assert "local witness" in first.created and mode(home / "witness") == 0o700
    assert mode(home) == 0o700
    keys = crypto.keys_dir(home)
    assert mode(keys) == 0o700
    assert mode(keys / crypto.MASTER_KEY_FILE) == 0o600
    assert mode(keys / crypto.SIGNING_KEY_FILE) == 0o600
    before = {p.name: p.read_bytes() for p in keys.iterdir()}

    second = init_instance(settings)

    assert second.created == []
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == before
    db = Database(settings["GOVERNANCE_DATABASE_URL"])
    try:
        assert schema_revision(db) == head_revision()
        with db.unit_of_work() as session:
            names = [p.name for p in accounts.list_principals(session)]
        assert names == ["admin"]
    finally:
        db.dispose()


def test_keys_load_and_refuse_loose_permissions(config):
    home = config["GOVERNANCE_HOME"]
    assert len(crypto.load_master_key(home)) == 32
    signing = crypto.load_signing_key(home)
    assert len(crypto.key_id(signing.public_key())) == 16
    path = crypto.keys_dir(home) / crypto.MASTER_KEY_FILE
    path.chmod(0o644)
    with pytest.raises(NotInitialized, match="0600"):
        crypto.load_master_key(home)


def test_master_key_from_environment_value_is_validated(tmp_path):
    import base64

    good = base64.b64encode(b"k" * 32).decode()
    assert crypto.load_master_key(tmp_path, good) == b"k" * 32
    with pytest.raises(NotInitialized, match="32 bytes"):
        crypto.load_master_key(tmp_path, base64.b64encode(b"short").decode())
    with pytest.raises(NotInitialized, match="base64"):
        crypto.load_master_key(tmp_path, "not base64!!")


def test_database_and_blob_files_are_owner_only(tmp_path):
    import stat

    from governance.config import load_config
    from governance.instance import init_instance
    from governance.storage import LocalBlobStore

    config = load_config({"GOVERNANCE_HOME": str(tmp_path / "home")})
    init_instance(config)
    database = tmp_path / "home" / "governance.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    store = LocalBlobStore(tmp_path / "home" / "blobs")
    with store.stage("abc") as handle:
        handle.write(b"ciphertext")
    store.publish("abc", "d/abc.blob")
    assert stat.S_IMODE((tmp_path / "home" / "blobs" / "d" / "abc.blob").stat().st_mode) == 0o600
