"""Master-key rotation without re-encryption, the CLI path, and a server killed mid-upload."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from governance import crypto
from governance.datasets import service
from governance.datasets.models import DatasetVersion
from governance.domains.keys import KeyRing
from governance.domains.models import DomainKey
from governance.storage import LocalBlobStore
from tests.test_cli import create_domain, govern

RECORDS = b'{"text": "Form W-2 box 1 wages"}\n{"prompt": "1099-NEC?", "completion": "Yes."}\n'


def read_all(env) -> list[dict]:
    from governance.db import Database

    db = Database(env["GOVERNANCE_DATABASE_URL"])
    home = env["GOVERNANCE_HOME"]
    try:
        with db.unit_of_work() as session:
            version = session.exec(sa.select(DatasetVersion)).scalars().first()
            return list(
                service.iter_version_records(
                    session, KeyRing(home), LocalBlobStore(Path(home) / "blobs"), version
                )
            )
    finally:
        db.dispose()


def test_cli_upload_and_master_key_rotation(env, tmp_path):
    govern(env, "init", check=True)
    create_domain(env, "consumer-tax")
    dataset_id = govern(env, "dataset", "create", "consumer-tax", "returns", check=True).stdout
    data = tmp_path / "returns.jsonl"
    data.write_bytes(RECORDS)
    uploaded = govern(
        env, "dataset", "upload", dataset_id.strip(), str(data), "--tax-year", "2025", check=True
    )
    assert "2 records" in uploaded.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": 1}\n')
    refused = govern(env, "dataset", "upload", dataset_id.strip(), str(bad), "--tax-year", "2025")
    assert refused.returncode == 1 and "line 2" in refused.stderr

    home = Path(env["GOVERNANCE_HOME"])
    master_before = (crypto.keys_dir(home) / crypto.MASTER_KEY_FILE).read_bytes()
    blob = next((home / "blobs").rglob("*.blob"))
    blob_before = blob.read_bytes()
    before = read_all(env)

    rotated = govern(env, "keys", "rotate", check=True)
    assert "1 domain keys re-wrapped" in rotated.stdout
    assert (crypto.keys_dir(home) / crypto.MASTER_KEY_FILE).read_bytes() != master_before
    assert blob.read_bytes() == blob_before, "rotation must not re-encrypt data"
    assert read_all(env) == before
    engine = sa.create_engine(env["GOVERNANCE_DATABASE_URL"])
    with engine.connect() as conn:
        ids = conn.execute(sa.select(DomainKey.master_key_id)).scalars().all()
    engine.dispose()
    new_id = crypto.master_key_id(crypto.load_master_key(home))
    assert ids == [new_id]
    listing = govern(env, "dataset", "list", "consumer-tax", check=True).stdout
    assert "v1\ttax_year=2025\tnot scanned\trecords=2" in listing

    # The rotated keys still open the data: scan it across two scanner processes.
    scanned = govern(
        env, "dataset", "scan", dataset_id.strip(), "1", "--processes", "2", check=True
    )
    receipt = json.loads(scanned.stdout)
    assert receipt["verdict"] == "pass" and receipt["records_total"] == 2
    assert receipt["sanitized_records"] == 2 and receipt["current_rules"] is True


SERVER = """
import sys
from werkzeug.serving import make_server
from governance.app import create_app
server = make_server("127.0.0.1", int(sys.argv[1]), create_app(), threaded=True)
print("ready", flush=True)
server.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env, port):
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_server_killed_mid_upload_leaves_no_version_and_no_stray_blob(env):
    govern(env, "init", check=True)
    create_domain(env, "consumer-tax")
    govern(env, "principal", "create", "casey", check=True)
    token = govern(env, "token", "create", "casey", check=True).stdout.strip()
    dataset_id = govern(
        env, "dataset", "create", "consumer-tax", "returns", check=True
    ).stdout.strip()
    staging = Path(env["GOVERNANCE_HOME"]) / "blobs" / ".staging"
    port = free_port()
    server = start_server(env, port)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.putrequest("POST", f"/api/v1/datasets/{dataset_id}/versions?tax_year=2025")
        connection.putheader("Authorization", f"Bearer {token}")
        connection.putheader("Content-Type", "application/x-ndjson")
        connection.putheader("Content-Length", str(50_000_000))
        connection.endheaders()
        line = b'{"text": "' + b"a" * 200 + b'"}\n'
        deadline = time.monotonic() + 60
        while not any(staging.glob("*.part")):
            connection.send(line * 2000)
            assert time.monotonic() < deadline, "the upload never reached the blob store"
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        connection.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
        server.stdout.close()
    assert list(staging.glob("*.part")), "the kill should have left a staged part behind"

    # The next start settles it: no version, no blob.
    server = start_server(env, port)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(
            "POST",
            f"/api/v1/datasets/{dataset_id}/versions?tax_year=2025",
            body=RECORDS,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        )
        assert connection.getresponse().status == 201
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
    assert not list(staging.glob("*.part"))
    blobs = list((Path(env["GOVERNANCE_HOME"]) / "blobs").rglob("*.blob"))
    assert len(blobs) == 1
    engine = sa.create_engine(env["GOVERNANCE_DATABASE_URL"])
    with engine.connect() as conn:
        numbers = conn.execute(sa.select(DatasetVersion.number)).scalars().all()
    engine.dispose()
    assert numbers == [1]


def test_two_sweeps_racing_for_one_leftover_both_settle(tmp_path):
    """Two uploads that start at once both settle a dead writer's staged blob: the one that
    loses the race finds it gone, which is not an error."""
    from governance.storage import STAGING, LocalBlobStore

    first, second = LocalBlobStore(tmp_path), LocalBlobStore(tmp_path)
    staging = tmp_path / STAGING
    staging.mkdir(parents=True)
    (staging / "abc.999999999.part").write_bytes(b"ciphertext")

    def committed(uid: str) -> str:
        # The other process sweeps first, in the middle of this one's sweep.
        second.sweep(lambda _uid: "ab/abc")
        return "ab/abc"

    assert first.sweep(committed) == {"published": 0, "deleted": 0}
    assert (tmp_path / "ab" / "abc").read_bytes() == b"ciphertext"
