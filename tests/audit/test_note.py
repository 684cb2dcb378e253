"""C2SP checkpoints and the witness: checked by an independent reading of the specifications
(written here from the C2SP text, sharing no code with `audit.note`), and a witness that
refuses rolled-back, truncated and forked logs, in process and as its own HTTP process."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import merkle
from audit.note import Checkpoint, VerifierKey, sign_note
from audit.witness import Witness

ORIGIN = "governance.test/audit/log"


# --- an independent verifier, from c2sp.org/signed-note, tlog-checkpoint, tlog-cosignature -----


def independent_verify(note: str, vkey: str) -> tuple[str, int, bytes]:
    """Verify a signed checkpoint note with a verifier key; return origin, size, root."""
    name, hash_hex, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x01 and len(raw) == 33, "Ed25519 verifier keys have type 0x01"
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert expected.hex() == hash_hex
    text, signatures = note.split("\n\n", 1)
    text += "\n"
    for line in signatures.splitlines():
        assert line.startswith("\u2014 ")
        signer, blob = line[2:].split(" ")
        decoded = base64.b64decode(blob)
        if signer == name and decoded[:4] == expected:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(decoded[4:], text.encode())
            origin, size, root, _ = text.split("\n", 3)
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by the key")


def independent_cosignature(body: str, line: str, vkey: str) -> int:
    name, hash_hex, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x04
    assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == hash_hex
    signer, blob = line.strip()[2:].split(" ")
    decoded = base64.b64decode(blob)
    assert signer == name and decoded[:4].hex() == hash_hex
    (timestamp,) = struct.unpack(">Q", decoded[4:12])
    message = f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()
    Ed25519PublicKey.from_public_bytes(raw[1:]).verify(decoded[12:], message)
    return timestamp


# --- fixtures -------------------------------------------------------------------------------


def leaves(count: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + str(i).encode()) for i in range(count)]


@pytest.fixture
def log_key():
    return Ed25519PrivateKey.generate()


def note_for(key, hashes: list[bytes]) -> str:
    body = Checkpoint(ORIGIN, len(hashes), merkle.root(hashes)).body()
    return sign_note(body, ORIGIN, key)


def request(old: int, proof: list[bytes], note: str) -> str:
    lines = [f"old {old}", *(base64.b64encode(p).decode() for p in proof)]
    return "\n".join(lines) + "\n\n" + note


@pytest.fixture
def witness(tmp_path, log_key):
    vkey = VerifierKey.of(ORIGIN, log_key.public_key()).encode()
    return Witness.init(tmp_path / "witness", "witness.test/w1", {ORIGIN: vkey})


def test_a_checkpoint_note_verifies_independently(log_key):
    hashes = leaves(7)
    note = note_for(log_key, hashes)
    vkey = VerifierKey.of(ORIGIN, log_key.public_key()).encode()
    assert independent_verify(note, vkey) == (ORIGIN, 7, merkle.root(hashes))
    assert VerifierKey.parse(vkey).encode() == vkey
    forged = note.replace("\n7\n", "\n8\n")
    with pytest.raises(Exception):  # noqa: B017 (any verification failure)
        independent_verify(forged, vkey)


def test_the_witness_cosigns_extensions_and_refuses_rollback_and_forks(witness, log_key):
    vkey = witness.verifier_key().encode()
    first = leaves(5)
    answer = witness.add_checkpoint(request(0, [], note_for(log_key, first)))
    assert answer.status == 200
    body = Checkpoint(ORIGIN, 5, merkle.root(first)).body()
    assert abs(independent_cosignature(body, answer.body, vkey) - time.time()) < 60
    grown = leaves(9)
    proof = merkle.consistency_proof(5, grown)
    stale = witness.add_checkpoint(request(0, [], note_for(log_key, grown)))
    assert (stale.status, stale.body, stale.content_type) == (409, "5\n", "text/x.tlog.size")
    assert witness.add_checkpoint(request(5, proof, note_for(log_key, grown))).status == 200
    # Rolled back to an older copy: the log shows 5 entries again.
    rolled = witness.add_checkpoint(request(9, [], note_for(log_key, first)))
    assert rolled.status == 400
    # Truncated and regrown differently (a fork): the proof cannot verify.
    fork = leaves(12, b"fork")
    bad = witness.add_checkpoint(
        request(9, merkle.consistency_proof(9, fork), note_for(log_key, fork))
    )
    assert bad.status == 422
    # Same size, other root.
    assert witness.add_checkpoint(request(9, [], note_for(log_key, leaves(9, b"x")))).status == 409
    # A checkpoint signed by another key, or of an unknown log.
    assert (
        witness.add_checkpoint(request(9, [], note_for(Ed25519PrivateKey.generate(), grown))).status
        == 403
    )
    other = sign_note(
        Checkpoint("other.test/log", 1, merkle.root(leaves(1))).body(), "other.test/log", log_key
    )
    assert witness.add_checkpoint(request(0, [], other)).status == 404
    latest = witness.latest(ORIGIN)
    assert independent_verify(latest, VerifierKey.of(ORIGIN, log_key.public_key()).encode())[1] == 9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_witness_as_its_own_process(tmp_path, witness, log_key):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audit.witness",
            "serve",
            str(witness.directory),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/latest?origin=x", timeout=1)
            except urllib.error.HTTPError as exc:
                exc.close()
                break
            except OSError:
                time.sleep(0.1)
        hashes = leaves(3)

        def post(body: str):
            call = urllib.request.Request(
                url + "/add-checkpoint", data=body.encode(), method="POST"
            )
            try:
                with urllib.request.urlopen(call, timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, exc.read().decode()

        status, line = post(request(0, [], note_for(log_key, hashes)))
        assert status == 200 and line.startswith("\u2014 witness.test/w1 ")
        assert post(request(0, [], note_for(log_key, hashes))) == (409, "3\n")
        with urllib.request.urlopen(url + f"/latest?origin={ORIGIN}", timeout=5) as response:
            assert response.read().decode().endswith(line)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_witness_files_are_private(witness):
    assert (Path(witness.directory) / "witness.key").stat().st_mode & 0o077 == 0
    key = serialization.load_pem_private_key(
        (Path(witness.directory) / "witness.key").read_bytes(), None
    )
    assert isinstance(key, Ed25519PrivateKey)
