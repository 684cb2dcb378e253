"""Signed model artifacts in the OpenSSF model-signing format (the `model-signing` package).

Each promoted version's adapter directory is signed, together with the manifest of its base
model (`base-manifest.json`: the base's name, license, source and the SHA-256 of every file),
with the service's model-signing key: an ECDSA P-256 key, because that format signs with
elliptic-curve keys (the audit log's Ed25519 key cannot serve). The signature is a Sigstore
bundle (DSSE envelope over an in-toto statement of every file's digest) kept with the version.

The gateway refuses to serve an adapter whose signature does not verify, so someone who can
write the database and the blob store, but not read the key file, cannot swap weights in.
Anyone can check a signed adapter with the package's own verifier:

    python -m model_signing verify key --signature adapter.sig \
        --public_key model-signing.pub ADAPTER_DIR
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from audit.log import canonical
from governance.crypto import check_secret_file, keys_dir, write_secret_file
from governance.errors import GovernanceError
from trainers.hashing import file_sha256

KEY_FILE = "model-signing.key"
PUBLIC_KEY_FILE = "model-signing.pub"
BASE_MANIFEST = "base-manifest.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class UntrustedAdapter(GovernanceError):
    """An adapter that is not signed, or whose signature does not verify, is never served."""

    status = 503
    code = "adapter_not_trusted"


def ensure_model_signing_key(home: str | Path) -> bool:
    """Create the service's model-signing key (P-256, 0600) and its public half if missing."""
    directory = keys_dir(home)
    private = directory / KEY_FILE
    if private.exists():
        return False
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    write_secret_file(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    (directory / PUBLIC_KEY_FILE).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return True


def public_key_path(home: str | Path) -> Path:
    return keys_dir(home) / PUBLIC_KEY_FILE


def base_manifest(base) -> bytes:
    """What the signature says about the base the adapter must be loaded on."""
    return canonical(
        {
            "name": base.name,
            "weights_sha256": base.weights_hash,
            "files": base.files,
            "license": base.license,
            "source": base.source,
        }
    )


def unpack_adapter(store, adapter_key: str, target: Path) -> Path:
    """Unpack a version's adapter archive from the blob store into target/adapter."""
    target.mkdir(parents=True, exist_ok=True)
    with store.open(adapter_key) as handle:
        payload = handle.read()
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
        tar.extractall(target, filter="data")
    return target / "adapter"


class ModelSigner:
    """Signs and verifies adapter directories with the instance's model-signing key."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)
        self._verified: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @property
    def public_key(self) -> Path:
        return public_key_path(self.home)

    def sign(self, adapter: Path) -> str:
        """Sign every file of the directory; return the Sigstore bundle as JSON text."""
        from model_signing import signing

        private = keys_dir(self.home) / KEY_FILE
        if not private.exists():
            ensure_model_signing_key(self.home)
        check_secret_file(private)
        with tempfile.TemporaryDirectory() as scratch:
            signature = Path(scratch) / "adapter.sig"
            signing.Config().use_elliptic_key_signer(private_key=private).sign(adapter, signature)
            return signature.read_text()

    def verify(self, adapter: Path, signature: str) -> None:
        """Raise UntrustedAdapter unless the directory matches the signature, file for file."""
        from model_signing import verifying

        if not signature:
            raise UntrustedAdapter("the adapter is not signed: it was never promoted")
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "adapter.sig"
            path.write_text(signature)
            try:
                verifying.Config().use_elliptic_key_verifier(public_key=self.public_key).verify(
                    adapter, path
                )
            except Exception as exc:  # the package raises ValueError and its own errors
                raise UntrustedAdapter(
                    "the adapter's signature does not verify",
                    details={"reason": str(exc)[:300]},
                ) from exc

    def verify_once(self, key: str, adapter: Path, signature: str) -> None:
        """Verify a served adapter the first time this process serves it (weights are still
        checked against their SHA-256 on every use)."""
        marker = (key, hashlib.sha256(signature.encode()).hexdigest())
        with self._lock:
            if marker in self._verified:
                return
        self.verify(adapter, signature)
        with self._lock:
            self._verified.add(marker)


def prepared_adapter(store, version, base, target: Path) -> Path:
    """The version's adapter unpacked with its base's manifest beside its files: exactly what
    is signed and what is verified."""
    adapter = unpack_adapter(store, version.adapter_key, target)
    (adapter / BASE_MANIFEST).write_bytes(base_manifest(base))
    return adapter


def sign_version(store, signer: ModelSigner, version, base) -> str:
    """Sign a version's adapter (with its base's manifest); return the signature."""
    with tempfile.TemporaryDirectory() as scratch:
        adapter = prepared_adapter(store, version, base, Path(scratch) / version.uid)
        recorded = (version.adapter_manifest or {}).get(f"adapter/{ADAPTER_WEIGHTS}")
        if file_sha256(adapter / ADAPTER_WEIGHTS) != recorded:
            raise UntrustedAdapter(
                f"the adapter of version {version.number} does not match its recorded hash"
            )
        return signer.sign(adapter)


def verify_version(store, signer: ModelSigner, version, base) -> dict[str, Any]:
    """Check a version's stored adapter against its signature (the CLI's `model verify`)."""
    with tempfile.TemporaryDirectory() as scratch:
        adapter = prepared_adapter(store, version, base, Path(scratch) / version.uid)
        signer.verify(adapter, version.adapter_signature or "")
        bundle = json.loads(version.adapter_signature)
        return {
            "files": sorted(p.name for p in adapter.iterdir()),
            "key_hint": bundle["verificationMaterial"]["publicKey"]["hint"],
            "payload_type": bundle["dsseEnvelope"]["payloadType"],
        }
