"""`python -m audit verify BUNDLE [--public-key FILE]`: verify an audit bundle offline.

Exit codes: 0 everything holds; 1 verification failed (the first bad entry or record is
named); 2 wrong usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audit.bundle import VerificationError, verify_bundle


def main(argv: list[str] | None = None) -> int:
    """Run the offline verifier."""
    parser = argparse.ArgumentParser(prog="python -m audit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="verify an audit bundle (directory or .tar.gz)")
    verify.add_argument("bundle", type=Path)
    verify.add_argument(
        "--public-key",
        type=Path,
        help="trusted Ed25519 public key (PEM); the bundle's own key must be this one",
    )
    args = parser.parse_args(argv)
    trusted = args.public_key.read_bytes() if args.public_key else None
    try:
        report = verify_bundle(args.bundle, trusted)
    except VerificationError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"cannot read bundle: {exc}", file=sys.stderr)
        return 2
    print(
        f"OK: {report.entries} entries, {report.checkpoints} checkpoints, {report.proofs} "
        f"proofs verified; tree size {report.tree_size}, key {report.key_id}"
    )
    print(json.dumps({"verified": True, **report.as_dict()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
