"""Evidence packs: one signed archive for an auditor or a regulator, verified offline.

A pack is a .tar.gz (or a directory) holding `index.json`, its signature `index.sig`, an
audit bundle in `audit-bundle/`, and the files the index lists (lineage, ML-BOMs, model
cards, approvals, scan receipts, erasure reports, reports, OpenLineage events). The index
names each file's SHA-256 and size, and the Annex IV section or Article 12 duty of the EU AI
Act it answers. The signature is Ed25519, by the service key that signs the audit log's
checkpoints, over the SHA-256 of index.json's bytes.

Verification needs nothing but this package and `cryptography`: the signature under the
trusted key, every listed file present with its hash, no file that the index does not list
(the audit bundle's files included), then the audit bundle itself.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from audit.bundle import VerificationError, verify_bundle
from audit.log import key_id, load_public_key

INDEX = "index.json"
SIGNATURE = "index.sig"
BUNDLE_DIR = "audit-bundle"
KIND = "evidence-pack"


def is_pack(path: Path) -> bool:
    """Whether `path` is an evidence pack (rather than a plain audit bundle)."""
    if path.is_dir():
        return (path / INDEX).is_file()
    try:
        with tarfile.open(path, "r:*") as tar:
            return any(m.name.lstrip("./") == INDEX for m in tar.getmembers())
    except (tarfile.TarError, OSError):
        return False


@dataclass
class PackReport:
    items: int
    bundle: dict[str, Any]
    period: str
    key_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "period": self.period, "key_id": self.key_id, **self.bundle}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_directory(root: Path, public_key_pem: bytes, **bundle_options) -> PackReport:
    raw = (root / INDEX).read_bytes()
    index = json.loads(raw)
    if index.get("kind") != KIND:
        raise VerificationError(f"{INDEX} is not an evidence pack's index")
    key = load_public_key(public_key_pem)
    try:
        signature = bytes.fromhex((root / SIGNATURE).read_text().strip())
        key.verify(signature, hashlib.sha256(raw).digest())
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError(f"{SIGNATURE} does not verify under key {key_id(key)}") from exc
    listed = set()
    for item in index["items"]:
        path = root / item["path"]
        if ".." in Path(item["path"]).parts or not path.is_file():
            raise VerificationError(f"{item['path']} is listed but missing")
        if _sha256(path) != item["sha256"] or path.stat().st_size != item["bytes"]:
            raise VerificationError(f"{item['path']} does not match its hash in the index")
        listed.add(item["path"])
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in listed | {INDEX, SIGNATURE}:
            raise VerificationError(f"{relative} is in the pack but not in its index")
    report = verify_bundle(root / BUNDLE_DIR, public_key_pem, **bundle_options)
    return PackReport(len(listed), report.as_dict(), index.get("period", ""), key_id(key))


def verify_pack(path: Path, public_key_pem: bytes, **bundle_options) -> PackReport:
    """Verify an evidence pack (directory or archive); raise VerificationError naming the
    first problem."""
    if path.is_dir():
        return _verify_directory(path, public_key_pem, **bundle_options)
    with tempfile.TemporaryDirectory() as scratch:
        with tarfile.open(path, "r:*") as tar:
            tar.extractall(scratch, filter="data")
        return _verify_directory(Path(scratch), public_key_pem, **bundle_options)
