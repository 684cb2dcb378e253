"""A transparency-log witness (c2sp.org/tlog-witness), small enough to run anywhere.

It remembers, per log origin, the largest checkpoint it has cosigned, and cosigns a new one only
when a consistency proof shows it extends that one: a log that is rolled back or truncated, or
that shows two different trees, cannot get a cosignature again. Its state lives in a directory
of its own (a key, the trusted log keys, the latest cosigned checkpoint per origin), kept on
another host or volume than the log's database.

    python -m audit.witness init DIR --name witness.example/w1 --log-key VKEY
    python -m audit.witness serve DIR [--host 127.0.0.1] [--port 8471]
    python -m audit.witness verifier-key DIR
    python -m audit.witness latest DIR ORIGIN

`serve` answers `POST /add-checkpoint` as the specification says (200 with cosignature lines;
400, 403, 404, 409 with `text/x.tlog.size`, 422), and `GET /latest?origin=...` with the latest
cosigned checkpoint as a note carrying the log's signature and the witness's cosignature, for
monitors and verifiers. Only `cryptography` and the standard library are used.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle
from audit.note import (
    COSIGNATURE_V1,
    NoteError,
    VerifierKey,
    cosign,
    split_note,
    verify_note,
)

KEY_FILE = "witness.key"
CONFIG_FILE = "witness.json"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"
MAX_PROOF_LINES = 63


@dataclass
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _replace(path: Path, text: str) -> None:
    """Write a file atomically and durably (temporary file, fsync, rename, fsync dir)."""
    temporary = path.with_suffix(".tmp")
    _write_private(temporary, text.encode())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Witness:
    """The witness over its state directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        config = json.loads((self.directory / CONFIG_FILE).read_text())
        self.name: str = config["name"]
        self.logs = {
            origin: VerifierKey.parse(vkey) for origin, vkey in config.get("logs", {}).items()
        }
        key = serialization.load_pem_private_key((self.directory / KEY_FILE).read_bytes(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the witness key must be Ed25519")
        self.key = key

    @classmethod
    def init(cls, directory: str | Path, name: str, log_keys: dict[str, str]) -> Witness:
        """Create a witness directory with a fresh key, trusting the given log keys."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (root / KEY_FILE).exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_private(root / KEY_FILE, pem)
        config_path = root / CONFIG_FILE
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        config["name"] = name
        config.setdefault("logs", {}).update(log_keys)
        _replace(config_path, json.dumps(config, indent=2, sort_keys=True))
        return cls(root)

    def verifier_key(self) -> VerifierKey:
        return VerifierKey.of(self.name, self.key.public_key(), COSIGNATURE_V1)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        """Read, and let the caller update, the state under an exclusive lock, so the check of
        the old size and the write of the new checkpoint are one step (the spec's race)."""
        with open(self.directory / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                path = self.directory / STATE_FILE
                state = json.loads(path.read_text()) if path.exists() else {}
                before = json.dumps(state, sort_keys=True)
                yield state
                if json.dumps(state, sort_keys=True) != before:
                    _replace(path, json.dumps(state, indent=2, sort_keys=True))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def latest(self, origin: str) -> str | None:
        """The latest cosigned checkpoint of a log: its note with both signatures."""
        path = self.directory / STATE_FILE
        state = json.loads(path.read_text()) if path.exists() else {}
        entry = state.get(origin)
        return None if entry is None else entry["note"] + entry["cosignature"]

    def add_checkpoint(self, request: str) -> Answer:
        """Handle an add-checkpoint request body."""
        head, separator, note = request.partition("\n\n")
        if not separator:
            return Answer(400, "the request has no empty line before the checkpoint\n")
        lines = head.split("\n")
        if not lines[0].startswith("old "):
            return Answer(400, "the request starts with an old size line\n")
        old_text = lines[0][4:]
        if not old_text.isdigit() or (old_text != "0" and old_text.startswith("0")):
            return Answer(400, "bad old size\n")
        old_size = int(old_text)
        if len(lines) - 1 > MAX_PROOF_LINES:
            return Answer(400, "too many consistency proof lines\n")
        try:
            proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
        except binascii.Error:
            return Answer(400, "a consistency proof line is not base64\n")
        if any(len(node) != 32 for node in proof):
            return Answer(400, "a consistency proof line is not a 32-byte hash\n")
        try:
            body, _signatures = split_note(note)
            origin = body.split("\n", 1)[0]
        except NoteError as exc:
            return Answer(400, f"{exc}\n")
        log_key = self.logs.get(origin)
        if log_key is None:
            return Answer(404, f"unknown log {origin}\n")
        try:
            checkpoint = verify_note(note, log_key)
        except NoteError as exc:
            return Answer(403, f"{exc}\n")
        if old_size > checkpoint.size:
            return Answer(400, "the old size is larger than the checkpoint's\n")
        with self._locked() as state:
            known = state.get(origin)
            known_size = known["size"] if known else 0
            if old_size != known_size:
                return Answer(409, f"{known_size}\n", "text/x.tlog.size")
            if known is not None:
                known_root = base64.b64decode(known["root"])
                if old_size == checkpoint.size:
                    if known_root != checkpoint.root:
                        return Answer(409, f"{known_size}\n", "text/x.tlog.size")
                elif not merkle.verify_consistency(
                    old_size, checkpoint.size, known_root, checkpoint.root, proof
                ):
                    return Answer(422, "the consistency proof does not verify\n")
            elif proof:
                return Answer(422, "the proof must be empty when the old size is zero\n")
            line = cosign(body, self.name, self.key, int(time.time()))
            state[origin] = {
                "size": checkpoint.size,
                "root": base64.b64encode(checkpoint.root).decode(),
                "note": note if note.endswith("\n") else note + "\n",
                "cosignature": line,
            }
        return Answer(200, line)


def _handler(witness: Witness):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, answer: Answer) -> None:
            data = answer.body.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if urlparse(self.path).path.rstrip("/") != "/add-checkpoint":
                self._send(Answer(404, "not found\n"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1 << 16:
                self._send(Answer(400, "request too large\n"))
                return
            try:
                request = self.rfile.read(length).decode()
            except UnicodeDecodeError:
                self._send(Answer(400, "not UTF-8\n"))
                return
            self._send(witness.add_checkpoint(request))

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path.rstrip("/") != "/latest":
                self._send(Answer(404, "not found\n"))
                return
            origin = parse_qs(url.query).get("origin", [""])[0]
            latest = witness.latest(origin)
            self._send(Answer(200, latest) if latest else Answer(404, "nothing cosigned\n"))

        def log_message(self, *args) -> None:  # requests carry no secrets, but keep quiet
            return

    return Handler


def serve(directory: str | Path, host: str = "127.0.0.1", port: int = 8471) -> None:
    """Serve the witness over HTTP until interrupted."""
    witness = Witness(directory)
    server = ThreadingHTTPServer((host, port), _handler(witness))
    print(f"witness {witness.name} on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.witness", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create a witness directory")
    init.add_argument("directory", type=Path)
    init.add_argument("--name", required=True, help="the witness's key name")
    init.add_argument(
        "--log-key", action="append", default=[], help="a log's verifier key (repeatable)"
    )
    run = commands.add_parser("serve", help="serve add-checkpoint over HTTP")
    run.add_argument("directory", type=Path)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8471)
    vkey = commands.add_parser("verifier-key", help="print the witness's verifier key")
    vkey.add_argument("directory", type=Path)
    latest = commands.add_parser("latest", help="print the latest cosigned checkpoint")
    latest.add_argument("directory", type=Path)
    latest.add_argument("origin")
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            keys = {VerifierKey.parse(k).name: k for k in args.log_key}
            print(Witness.init(args.directory, args.name, keys).verifier_key().encode())
        elif args.command == "serve":
            serve(args.directory, args.host, args.port)
        elif args.command == "verifier-key":
            print(Witness(args.directory).verifier_key().encode())
        else:
            found = Witness(args.directory).latest(args.origin)
            if found is None:
                print(f"nothing cosigned for {args.origin}", file=sys.stderr)
                return 1
            print(found, end="")
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
