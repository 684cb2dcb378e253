"""Key material on disk: the master key and the service's Ed25519 signing key.

Keys live under GOVERNANCE_HOME/keys (0700) in files readable by the owner only (0600).
The master key may instead come from GOVERNANCE_MASTER_KEY (base64 of 32 bytes), which is how a
deployment hands it over from a secret store; a KMS-backed provider can replace this module's
functions later without the callers changing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from governance.errors import GovernanceError, NotInitialized

MASTER_KEY_FILE = "master.key"
SIGNING_KEY_FILE = "signing.key"
SIGNING_PUBLIC_KEY_FILE = "signing.pub"


class KeyFileError(NotInitialized):
    code = "key_error"


def keys_dir(home: str | Path) -> Path:
    """Return the directory holding the instance's keys."""
    return Path(home) / "keys"


def write_secret_file(path: Path, data: bytes) -> None:
    """Create a file only its owner can read, failing if it already exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def check_secret_file(path: Path) -> None:
    """Refuse a key file that anyone but its owner can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path} has permissions {mode:o}; key files must be 0600",
            details={"path": str(path)},
        )


MASTER_KEY_NEXT_FILE = "master.key.next"


def ensure_master_key(home: str | Path) -> bool:
    """Create the master key file if missing; return True when one was created."""
    path = keys_dir(home) / MASTER_KEY_FILE
    if path.exists():
        return False
    write_secret_file(path, encode_master_key(os.urandom(32)))
    return True


def encode_master_key(key: bytes) -> bytes:
    """Render a master key as its key file holds it."""
    return base64.b64encode(key) + b"\n"


def load_master_key_file(path: Path) -> bytes:
    """Read and check a master key file."""
    check_secret_file(path)
    return decode_master_key(path.read_bytes().strip(), str(path))


def decode_master_key(raw: bytes, source: str) -> bytes:
    try:
        key = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise KeyFileError(f"master key in {source} is not valid base64") from exc
    if len(key) != 32:
        raise KeyFileError(f"master key in {source} must be 32 bytes, not {len(key)}")
    return key


def load_master_key(home: str | Path, env_value: str | None = None) -> bytes:
    """Return the 32-byte master key, from the environment value or the instance's key file."""
    if env_value:
        return decode_master_key(env_value.encode(), "GOVERNANCE_MASTER_KEY")
    path = keys_dir(home) / MASTER_KEY_FILE
    if not path.exists():
        raise KeyFileError(f"no master key at {path}; run `govern init`")
    return load_master_key_file(path)


def ensure_signing_key(home: str | Path) -> bool:
    """Create the Ed25519 service signing key and its public half if missing."""
    directory = keys_dir(home)
    private_path = directory / SIGNING_KEY_FILE
    if private_path.exists():
        public_path = directory / SIGNING_PUBLIC_KEY_FILE
        if not public_path.exists():
            public_path.write_bytes(public_key_pem(load_signing_key(home).public_key()))
        return False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(private_path, pem)
    public_path = directory / SIGNING_PUBLIC_KEY_FILE
    public_path.write_bytes(public_key_pem(key.public_key()))
    return True


def load_signing_key(home: str | Path) -> Ed25519PrivateKey:
    """Load the service's Ed25519 signing key."""
    path = keys_dir(home) / SIGNING_KEY_FILE
    if not path.exists():
        raise KeyFileError(f"no signing key at {path}; run `govern init`")
    check_secret_file(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} does not hold an Ed25519 private key")
    # The public half on disk is what auditors are handed: it must be this key's.
    public_path = keys_dir(home) / SIGNING_PUBLIC_KEY_FILE
    if public_path.exists() and public_path.read_bytes() != public_key_pem(key.public_key()):
        raise KeyFileError(
            f"{public_path} is not the public half of {path}: it was replaced; restore it "
            "(or delete it and run `govern init` to write it again)"
        )
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """Serialize a public key as PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: Ed25519PublicKey) -> str:
    """Name a public key by the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# --- envelope encryption ---------------------------------------------------------------------
#
# master key --wraps--> domain key --wraps--> per-version data key --encrypts--> records
# All three are 256-bit AES-GCM keys. Wrapping binds the wrapped key to what it belongs to
# (the associated data), so a wrapped key copied onto another domain or version will not open.

NONCE_BYTES = 12


def new_key() -> bytes:
    """Return a fresh 256-bit key."""
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """Encrypt with AES-256-GCM; the result is nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """Decrypt what seal() produced; raise KeyFileError when it does not authenticate."""
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag as exc:
        raise DecryptionError("ciphertext does not authenticate under this key") from exc


def master_key_id(key: bytes) -> str:
    """Name a master key without revealing it: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(b"governance-master-key\n" + key).hexdigest()[:16]


class DecryptionError(GovernanceError):
    status = 500
    code = "decryption_failed"
