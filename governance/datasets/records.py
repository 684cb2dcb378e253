"""Validating JSONL records, and the encrypted blob format that holds them.

A record is a JSON object with either `text`, or `prompt` and `completion` (non-empty
strings), and optionally `metadata` (an object); nothing else. Records are stored in their
canonical encoding, so the same record always hashes the same.

Blob format: MAGIC, then chunks. Each chunk is a 4-byte big-endian length followed by an
AES-256-GCM sealed box of up to CHUNK_BYTES of canonical JSON lines. The associated data of
chunk i is `<version uid>/<i>/<last|more>`, so chunks cannot be reordered, dropped or the blob
truncated without decryption failing.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

from audit import merkle
from governance import crypto, strict_json
from governance.errors import GovernanceError, InvalidInput, PayloadTooLarge

MAGIC = b"GOVDS1\n"
CHUNK_BYTES = 1 << 20
TEXT_FIELDS = ("text", "prompt", "completion")
ALLOWED_FIELDS = frozenset({*TEXT_FIELDS, "metadata"})


class CorruptBlob(GovernanceError):
    status = 500
    code = "corrupt_blob"


def line_error(line: int, message: str, field: str | None = None) -> InvalidInput:
    return InvalidInput(
        f"line {line}: {message}", details={"line": line, "field": field}, code="invalid_record"
    )


def parse_record(raw: bytes, line: int) -> dict[str, Any]:
    """Validate one JSONL line and return the record it holds."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise line_error(line, f"not UTF-8 (byte {exc.start})") from exc
    try:
        record = strict_json.loads(text)
    except json.JSONDecodeError as exc:
        raise line_error(line, f"malformed JSON: {exc.msg} at column {exc.colno}") from exc
    except strict_json.JSONRefused as exc:
        raise line_error(line, exc.message, exc.path or None) from exc
    if not isinstance(record, dict):
        raise line_error(line, "a record must be a JSON object")
    unknown = sorted(set(record) - ALLOWED_FIELDS)
    if unknown:
        raise line_error(line, f"unknown field {unknown[0]!r}", unknown[0])
    if "text" in record:
        if "prompt" in record or "completion" in record:
            raise line_error(line, "give either text or prompt and completion, not both", "text")
        required = ("text",)
    else:
        required = ("prompt", "completion")
    for field in required:
        if field not in record:
            raise line_error(line, f"missing field {field!r}", field)
        value = record[field]
        if not isinstance(value, str) or not value.strip():
            raise line_error(line, f"{field!r} must be a non-empty string", field)
    if "metadata" in record and not isinstance(record["metadata"], dict):
        raise line_error(line, "'metadata' must be an object", "metadata")
    return record


def iter_lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, bytes) from a binary stream, refusing lines over max_line."""
    number = 0
    while True:
        raw = stream.readline(max_line + 2)
        if not raw:
            return
        number += 1
        if len(raw) > max_line + 1 or (len(raw) == max_line + 1 and not raw.endswith(b"\n")):
            raise PayloadTooLarge(
                f"line {number}: record longer than {max_line} bytes",
                details={"line": number, "limit": max_line},
            )
        yield number, raw.rstrip(b"\r\n")


class BlobWriter:
    """Encrypt canonical records into the blob format, a chunk at a time, keeping the Merkle
    tree of their hashes: `content` gives the record count and the content hash."""

    def __init__(self, out: IO[bytes], key: bytes, uid: str) -> None:
        self.out = out
        self.key = key
        self.uid = uid
        self.index = 0
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.pending: bytes | None = None  # held back until we know whether it is the last
        self.content = merkle.CompactRange()
        out.write(MAGIC)

    def add(self, encoded: bytes, leaf: bytes | None = None) -> None:
        """Add one record in its canonical encoding (and its leaf hash, if known)."""
        self.content.append(leaf or merkle.leaf_hash(encoded))
        self.buffer.append(encoded + b"\n")
        self.buffered += len(encoded) + 1
        if self.buffered >= CHUNK_BYTES:
            self._cut()

    def _cut(self) -> None:
        if self.pending is not None:
            self._emit(self.pending, last=False)
        self.pending = b"".join(self.buffer)
        self.buffer, self.buffered = [], 0

    def _emit(self, plaintext: bytes, last: bool) -> None:
        aad = f"{self.uid}/{self.index}/{'last' if last else 'more'}".encode()
        sealed = crypto.seal(self.key, plaintext, aad)
        self.out.write(struct.pack(">I", len(sealed)) + sealed)
        self.index += 1

    def close(self) -> None:
        if self.buffer:
            self._cut()
        if self.pending is not None:
            self._emit(self.pending, last=True)
            self.pending = None


def read_blob(stream: IO[bytes], key: bytes, uid: str) -> Iterator[dict[str, Any]]:
    """Decrypt a blob and yield its records in order."""
    if stream.read(len(MAGIC)) != MAGIC:
        raise CorruptBlob(f"dataset version {uid}: not a dataset blob")
    index = 0
    header = stream.read(4)
    while header:
        (size,) = struct.unpack(">I", header)
        sealed = stream.read(size)
        header = stream.read(4)
        last = not header
        aad = f"{uid}/{index}/{'last' if last else 'more'}".encode()
        try:
            plaintext = crypto.open_sealed(key, sealed, aad)
        except crypto.DecryptionError as exc:
            raise CorruptBlob(
                f"dataset version {uid}: chunk {index} does not decrypt (altered or truncated)"
            ) from exc
        for line in plaintext.splitlines():
            yield json.loads(line)
        index += 1


@dataclass(frozen=True)
class Shard:
    """One finished shard of a sharded write."""

    ordinal: int
    first_record: int
    record_count: int
    plaintext_bytes: int
    content_hash: str
    blob_uid: str


def shard_uid(uid: str, ordinal: int) -> str:
    """The name shard `ordinal` of `uid` is sealed and staged under."""
    return f"{uid}.{ordinal}"


class ShardedWriter:
    """Encrypt canonical records into shards of about `shard_bytes` of plaintext each, every
    shard a blob of its own (sealed under `<uid>.<ordinal>`), staged one after another.

    `content` is the Merkle tree of every record, in order, across shards: the version's
    content hash does not depend on where shards were cut. `discard()` removes what was
    staged, for a write that fails."""

    def __init__(
        self,
        stage: Callable[[str], AbstractContextManager[IO[bytes]]],
        discard: Callable[[str], None],
        key: bytes,
        uid: str,
        shard_bytes: int,
    ) -> None:
        self.stage, self.discard_staged = stage, discard
        self.key, self.uid, self.shard_bytes = key, uid, max(1, shard_bytes)
        self.content = merkle.CompactRange()
        self.shards: list[Shard] = []
        self.staged: list[str] = []
        self._context: AbstractContextManager[IO[bytes]] | None = None
        self._writer: BlobWriter | None = None
        self._first = 0
        self._bytes = 0

    def add(self, encoded: bytes) -> None:
        if self._writer is None:
            blob_uid = shard_uid(self.uid, len(self.shards))
            self._context = self.stage(blob_uid)
            self.staged.append(blob_uid)
            self._writer = BlobWriter(self._context.__enter__(), self.key, blob_uid)
            self._first, self._bytes = self.content.size, 0
        leaf = merkle.leaf_hash(encoded)
        self.content.append(leaf)
        self._writer.add(encoded, leaf)
        self._bytes += len(encoded) + 1
        if self._bytes >= self.shard_bytes:
            self._cut()

    def _cut(self) -> None:
        writer, context = self._writer, self._context
        assert writer is not None and context is not None
        writer.close()
        self._writer = self._context = None
        context.__exit__(None, None, None)
        self.shards.append(
            Shard(
                ordinal=len(self.shards),
                first_record=self._first,
                record_count=writer.content.size,
                plaintext_bytes=self._bytes,
                content_hash=writer.content.root().hex(),
                blob_uid=writer.uid,
            )
        )

    def close(self) -> list[Shard]:
        """Finish the last shard; the shards, in order."""
        if self._writer is not None:
            self._cut()
        return self.shards

    def discard(self) -> None:
        """Remove every shard staged so far (the write failed)."""
        if self._context is not None:
            context, self._context, self._writer = self._context, None, None
            # Leave the open stage as a failed block would: it removes its part.
            abandoned = RuntimeError("write abandoned")
            context.__exit__(RuntimeError, abandoned, None)
        for blob_uid in self.staged:
            self.discard_staged(blob_uid)
