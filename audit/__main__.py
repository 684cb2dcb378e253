"""`python -m audit`: verify an audit bundle offline, and pin the keys you trust.

    python -m audit trust KEYFILE                 # pin a log key (PEM) or a witness key (vkey)
    python -m audit verify BUNDLE [--public-key FILE] [--witness-key VKEY]...
                                  [--witnessed NOTE]... [--require-witnesses N]
                                  [--trust-bundle-key]

A bundle carries its own public key, which an insider could replace along with the log; so
`verify` refuses unless the key is given (`--public-key`), was pinned earlier (`trust`), or the
caller says explicitly that it trusts the bundle's key (`--trust-bundle-key`). Witness keys come
from `--witness-key` and the pins; only cosignatures under them count.

The pins live in $AUDIT_TRUST_FILE, else ~/.config/governance-audit/trusted.json.

Exit codes: 0 everything holds; 1 verification failed or the key is not trusted (the first
bad entry or record is named); 2 wrong usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from audit.bundle import PUBLIC_KEY, BundleReader, VerificationError, verify_bundle
from audit.evidence import BUNDLE_DIR, is_pack, verify_pack
from audit.log import key_id, load_public_key
from audit.note import COSIGNATURE_V1, ED25519, NoteError, VerifierKey


def trust_file() -> Path:
    configured = os.environ.get("AUDIT_TRUST_FILE")
    if configured:
        return Path(configured)
    return Path.home() / ".config" / "governance-audit" / "trusted.json"


def load_trust() -> dict[str, list[str]]:
    path = trust_file()
    if not path.exists():
        return {"log_keys": [], "witness_keys": []}
    data = json.loads(path.read_text())
    return {"log_keys": data.get("log_keys", []), "witness_keys": data.get("witness_keys", [])}


def pin(keyfile: Path) -> str:
    """Pin a log key (PEM, or an Ed25519 note verifier key) or a witness's cosignature key."""
    text = keyfile.read_text().strip()
    trust = load_trust()
    if text.startswith("-----BEGIN"):
        kind, what = "log_keys", f"log key {key_id(load_public_key(text.encode()))}"
        value = text + "\n"
    else:
        key = VerifierKey.parse(text)
        value = key.encode()
        if key.kind == ED25519:
            kind, what = "log_keys", f"log key {key.name}"
        elif key.kind == COSIGNATURE_V1:
            kind, what = "witness_keys", f"witness key {key.name}"
        else:
            raise NoteError("unknown key type")
    if value not in trust[kind]:
        trust[kind].append(value)
    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trust, indent=2, sort_keys=True))
    path.chmod(0o600)
    return what


def pinned_log_key(bundle: Path) -> bytes | None:
    """The bundle's public key if the auditor pinned it (as PEM or as a note verifier key)."""
    reader = BundleReader(bundle)
    try:
        bundled = load_public_key(reader.read_bytes(PUBLIC_KEY))
    finally:
        reader.close()
    wanted = key_id(bundled)
    for value in load_trust()["log_keys"]:
        if value.startswith("-----BEGIN"):
            if key_id(load_public_key(value.encode())) == wanted:
                return value.encode()
        else:
            key = VerifierKey.parse(value)
            if key_id(key.ed25519()) == wanted:
                return key.ed25519().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the offline verifier."""
    parser = argparse.ArgumentParser(prog="python -m audit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    trust = commands.add_parser("trust", help="pin a log or witness key for later verifications")
    trust.add_argument("keyfile", type=Path)
    verify = commands.add_parser("verify", help="verify an audit bundle (directory or .tar.gz)")
    verify.add_argument("bundle", type=Path)
    verify.add_argument(
        "--public-key",
        type=Path,
        help="trusted Ed25519 public key (PEM); the bundle's own key must be this one",
    )
    verify.add_argument(
        "--trust-bundle-key",
        action="store_true",
        help="accept the bundle's own key without a pin (an insider could have replaced it)",
    )
    verify.add_argument(
        "--witness-key", action="append", default=[], help="a trusted witness verifier key"
    )
    verify.add_argument(
        "--require-witnesses", type=int, default=0, help="how many trusted witnesses must agree"
    )
    verify.add_argument(
        "--witnessed",
        type=Path,
        action="append",
        default=[],
        help="a witness's latest cosigned checkpoint, fetched from the witness itself",
    )
    args = parser.parse_args(argv)
    if args.command == "verify" and is_pack(args.bundle):
        # An evidence pack: its index is signed by the same key, and it holds an audit bundle.
        if args.bundle.is_dir():
            return _verify(args, args.bundle)
        with tempfile.TemporaryDirectory() as scratch:
            with tarfile.open(args.bundle, "r:*") as tar:
                tar.extractall(scratch, filter="data")
            return _verify(args, Path(scratch))
    return _verify(args, getattr(args, "bundle", Path()))


def _verify(args: argparse.Namespace, path: Path) -> int:
    pack = args.command == "verify" and is_pack(path)
    bundle = path / BUNDLE_DIR if pack else path
    try:
        if args.command == "trust":
            print(f"pinned {pin(args.keyfile)} in {trust_file()}")
            return 0
        if args.public_key:
            trusted = args.public_key.read_bytes()
        else:
            trusted = pinned_log_key(bundle)
            if trusted is None and not args.trust_bundle_key:
                print(
                    "FAILED: the bundle's signing key is not pinned: pass --public-key, pin it "
                    "with `python -m audit trust KEYFILE`, or accept it with --trust-bundle-key",
                    file=sys.stderr,
                )
                return 1
        witness_keys = [*args.witness_key, *load_trust()["witness_keys"]]
        notes = [path.read_text() for path in args.witnessed]
        if pack:
            if trusted is None:  # --trust-bundle-key: the key the bundle carries
                reader = BundleReader(bundle)
                try:
                    trusted = reader.read_bytes(PUBLIC_KEY)
                finally:
                    reader.close()
            checked = verify_pack(
                path,
                trusted,
                witness_keys=witness_keys,
                required_witnesses=args.require_witnesses,
                witnessed_notes=notes,
            )
            print(
                f"OK: evidence pack for {checked.period}: signed index and {checked.items} "
                f"files verified under key {checked.key_id}; audit bundle of "
                f"{checked.bundle['entries']} entries verified"
            )
            print(json.dumps({"verified": True, **checked.as_dict()}, sort_keys=True))
            return 0
        report = verify_bundle(bundle, trusted, witness_keys, args.require_witnesses, notes)
    except VerificationError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"cannot read bundle or key: {exc}", file=sys.stderr)
        return 2
    witnessed = ", ".join(report.witnessed) or "no trusted witness"
    print(
        f"OK: {report.entries} entries, {report.checkpoints} checkpoints, {report.proofs} "
        f"proofs verified; tree size {report.tree_size}, key {report.key_id}; witnessed by "
        f"{witnessed}"
    )
    if not report.complete:
        # "complete": false is not a fault: say what it means where the auditor reads.
        print(
            "a selection, not the whole log (complete: false): the entries the export's "
            "filters chose, or those of the domains its requester may audit, or a log whose "
            "older entries retention pruned; each entry here is proven to belong to the signed "
            "log, and the log's other leaves are present as hashes only"
        )
    print(json.dumps({"verified": True, **report.as_dict()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
