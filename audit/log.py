"""Entries and checkpoints of the audit log: canonical encoding, signing and checking.

An entry is a JSON object encoded canonically (sorted keys, no insignificant whitespace,
UTF-8); its leaf hash is RFC 6962's SHA-256(0x00 || encoding). A checkpoint names a tree size,
its root, a time and the id of the key that signed it, and carries an Ed25519 signature over
CHECKPOINT_CONTEXT followed by the checkpoint's canonical encoding.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.merkle import leaf_hash

CHECKPOINT_CONTEXT = b"governance-audit-checkpoint/1\n"
ENTRY_FIELDS = (
    "seq",
    "time",
    "principal",
    "action",
    "object",
    "domain",
    "decision",
    "policy_hash",
    "request_id",
    "details",
)


def canonical(value: Any) -> bytes:
    """Encode a JSON value canonically: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_leaf_hash(entry: dict[str, Any]) -> bytes:
    """Return the RFC 6962 leaf hash of an entry."""
    return leaf_hash(canonical(entry))


def key_id(public_key: Ed25519PublicKey) -> str:
    """Name a public key by the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the log had tree_size entries with this root at this time."""

    tree_size: int
    root: str  # hex
    timestamp: str  # ISO 8601, UTC
    key_id: str
    signature: str = ""  # base64 Ed25519 signature

    def body(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root": self.root,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
        }

    def signed_bytes(self) -> bytes:
        return CHECKPOINT_CONTEXT + canonical(self.body())

    @classmethod
    def sign(
        cls, tree_size: int, root: bytes, timestamp: str, key: Ed25519PrivateKey
    ) -> Checkpoint:
        """Create and sign a checkpoint."""
        unsigned = cls(tree_size, root.hex(), timestamp, key_id(key.public_key()))
        signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode()
        return cls(tree_size, root.hex(), timestamp, unsigned.key_id, signature)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """Check the signature with the given public key."""
        if self.key_id != key_id(public_key):
            return False
        try:
            public_key.verify(base64.b64decode(self.signature), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            tree_size=int(data["tree_size"]),
            root=str(data["root"]),
            timestamp=str(data["timestamp"]),
            key_id=str(data["key_id"]),
            signature=str(data.get("signature", "")),
        )


# --- pruning -------------------------------------------------------------------------------

PRUNE_CONTEXT = b"governance-audit-prune/1\n"
PRUNE_ACTION = "audit.prune"


def prune_statement(ranges: list[list[int]], leaves: list[bytes], checkpoint: int) -> bytes:
    """What the log's key signs when retention blanks entries: the runs of seqs, the SHA-256 of
    their leaf hashes in order, and the checkpoint they lay under. A signed statement
    authorizes blanking exactly those entries, so a prune forged by someone without the key
    (an insider with the database only) fails every verifier."""
    digest = hashlib.sha256(b"".join(leaves)).hexdigest()
    return PRUNE_CONTEXT + canonical({"ranges": ranges, "leaves": digest, "checkpoint": checkpoint})


def sign_prune(
    key: Ed25519PrivateKey, ranges: list[list[int]], leaves: list[bytes], checkpoint: int
) -> str:
    return base64.b64encode(key.sign(prune_statement(ranges, leaves, checkpoint))).decode()


def prune_seqs(ranges: Any) -> list[int]:
    """The seqs of `[[first, last], ...]`, refusing anything that is not such a list."""
    seqs: list[int] = []
    if not isinstance(ranges, list):
        raise ValueError("ranges is not a list")
    for run in ranges:
        if (
            not isinstance(run, list)
            or len(run) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in run)
            or not 1 <= run[0] <= run[1]
            or run[1] - run[0] > 10_000_000
        ):
            raise ValueError(f"bad range {run!r}")
        seqs.extend(range(run[0], run[1] + 1))
    return seqs


def check_prune(details: Any, leaves: dict[int, bytes], public_key: Ed25519PublicKey) -> list[int]:
    """The seqs an `audit.prune` entry's details account for, given the leaf hashes of the
    blanked entries seen so far; ValueError when the entry is unsigned, names an entry that
    was not blanked, or its signature does not verify under the log's key."""
    if not isinstance(details, dict):
        raise ValueError("its details are not an object")
    seqs = prune_seqs(details.get("ranges", []))
    signature, checkpoint = details.get("signature"), details.get("checkpoint")
    if not isinstance(signature, str) or not isinstance(checkpoint, int):
        raise ValueError("it is not signed by the log's key")
    missing = [s for s in seqs if s not in leaves]
    if missing:
        raise ValueError(f"it names entry {missing[0]}, which was not blanked before it")
    statement = prune_statement(details["ranges"], [leaves[s] for s in seqs], checkpoint)
    try:
        public_key.verify(base64.b64decode(signature, validate=True), statement)
    except (InvalidSignature, ValueError) as exc:
        raise ValueError("its signature does not verify under the log's key") from exc
    if any(s > checkpoint for s in seqs):
        raise ValueError("it blanks entries no checkpoint covered when it was made")
    return seqs
