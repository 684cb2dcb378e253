"""C2SP signed notes, tlog checkpoints and cosignatures (Ed25519), for off-the-shelf tools.

- A *checkpoint* (c2sp.org/tlog-checkpoint) is the note body `<origin>\\n<size>\\n<b64 root>\\n`.
- A *signed note* (c2sp.org/signed-note) is the body, an empty line, and signature lines
  `— <key name> <base64(4-byte key hash || signature)>`; the key hash is
  SHA-256(name || "\\n" || 0x01 || Ed25519 public key)[:4] and the signature covers the body.
- A *verifier key* is `<name>+<hex key hash>+<base64(0x01 || public key)>`.
- A *cosignature* (c2sp.org/tlog-cosignature, cosignature/v1) is a signature line by a witness
  whose key hash uses the type byte 0x04 and whose signature bytes are an 8-byte big-endian
  POSIX timestamp followed by an Ed25519 signature over
  `cosignature/v1\\ntime <timestamp>\\n` and the checkpoint body.

Only `cryptography` and the standard library are used, so an auditor can verify with this
package alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"


class NoteError(ValueError):
    """A note, checkpoint or key that is malformed or does not verify."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_hash(name: str, kind: int, public: bytes) -> bytes:
    """The 4-byte key hash of a signed-note key: SHA-256(name || \\n || type || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"bad key name {name!r}: it must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class VerifierKey:
    """A named public key in signed-note verifier-key form."""

    name: str
    kind: int
    public: bytes

    @property
    def hash(self) -> bytes:
        return key_hash(self.name, self.kind, self.public)

    def encode(self) -> str:
        material = base64.b64encode(bytes([self.kind]) + self.public).decode()
        return f"{self.name}+{self.hash.hex()}+{material}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        try:
            name, hash_hex, material = text.strip().split("+", 2)
            raw = base64.b64decode(material, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError(f"not a verifier key: {text.strip()[:60]!r}") from exc
        _check_name(name)
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("verifier key: only Ed25519 (0x01) and cosignature/v1 (0x04)")
        key = cls(name, raw[0], raw[1:])
        if key.hash.hex() != hash_hex:
            raise NoteError(f"verifier key {name}: the key hash does not match the key")
        return key

    @classmethod
    def of(cls, name: str, public_key: Ed25519PublicKey, kind: int = ED25519) -> VerifierKey:
        _check_name(name)
        return cls(name, kind, raw_public(public_key))

    def ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public)


@dataclass(frozen=True)
class Checkpoint:
    """The body of a tlog checkpoint."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint body has three newline-terminated lines at least")
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("checkpoint: empty origin line")
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError(f"checkpoint: bad tree size {size!r}")
        try:
            raw = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise NoteError("checkpoint: the root is not base64") from exc
        if len(raw) != 32:
            raise NoteError("checkpoint: the root is not 32 bytes")
        return cls(origin, int(size), raw)


@dataclass(frozen=True)
class Signature:
    name: str
    hash: bytes
    blob: bytes

    def line(self) -> str:
        return f"{DASH} {self.name} {base64.b64encode(self.hash + self.blob).decode()}\n"


def split_note(note: str) -> tuple[str, list[Signature]]:
    """Split a signed note into its body (ending in a newline) and its signature lines."""
    body, sep, rest = note.partition("\n\n")
    if not sep:
        raise NoteError("a signed note has an empty line between its body and its signatures")
    signatures = []
    for line in rest.split("\n"):
        if not line:
            continue
        if not line.startswith(DASH + " "):
            raise NoteError(f"not a signature line: {line[:40]!r}")
        try:
            name, encoded = line[2:].split(" ")
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError(f"malformed signature line: {line[:40]!r}") from exc
        if len(raw) < 5:
            raise NoteError("a signature line carries a key hash and a signature")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    if not signatures:
        raise NoteError("a signed note has at least one signature")
    return body + "\n", signatures


def sign_note(body: str, name: str, key: Ed25519PrivateKey) -> str:
    """A signed note: the body, an empty line and one Ed25519 signature line."""
    _check_name(name)
    signature = key.sign(body.encode())
    hashed = key_hash(name, ED25519, raw_public(key.public_key()))
    return body + "\n" + Signature(name, hashed, signature).line()


def verify_note(note: str, key: VerifierKey) -> Checkpoint:
    """Verify a signed checkpoint note with the log's key; return the checkpoint."""
    body, signatures = split_note(note)
    for signature in signatures:
        if signature.name == key.name and signature.hash == key.hash:
            try:
                key.ed25519().verify(signature.blob, body.encode())
            except InvalidSignature as exc:
                raise NoteError(f"the signature by {key.name} does not verify") from exc
            return Checkpoint.parse_body(body)
    raise NoteError(f"no signature by {key.name} ({key.hash.hex()}) on the note")


def cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


def cosign(body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """A cosignature/v1 signature line over a checkpoint body."""
    _check_name(name)
    signature = key.sign(cosigned_message(body, timestamp))
    hashed = key_hash(name, COSIGNATURE_V1, raw_public(key.public_key()))
    return Signature(name, hashed, struct.pack(">Q", timestamp) + signature).line()


def verify_cosignature(body: str, line: str, key: VerifierKey) -> int:
    """Verify a witness's cosignature line over a checkpoint body; return its timestamp."""
    if key.kind != COSIGNATURE_V1:
        raise NoteError(f"{key.name} is not a cosignature/v1 key")
    _body, signatures = split_note(body + "\n" + line.rstrip("\n") + "\n")
    for signature in signatures:
        if signature.name == key.name and signature.hash == key.hash:
            if len(signature.blob) != 72:
                raise NoteError("a cosignature/v1 carries a timestamp and an Ed25519 signature")
            (timestamp,) = struct.unpack(">Q", signature.blob[:8])
            try:
                key.ed25519().verify(signature.blob[8:], cosigned_message(body, timestamp))
            except InvalidSignature as exc:
                raise NoteError(f"the cosignature by {key.name} does not verify") from exc
            return timestamp
    raise NoteError(f"no cosignature by {key.name} on the checkpoint")
