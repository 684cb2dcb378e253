"""Audit bundles: what an auditor takes away and verifies offline, in constant memory.

A bundle is a directory, or the same files in a .tar.gz:

    manifest.json       format, creation time, filters, tree_size (the anchor), entry count,
                        whether the entries are the complete log, key id
    public_key.pem      the service's Ed25519 public key
    checkpoints.jsonl   signed checkpoints, by increasing tree size; the last is the anchor
    entries.jsonl       the selected entries by increasing seq: "LEAF_HASH_HEX CANONICAL_JSON"
    leaves.txt          every leaf hash of the log up to the anchor, one hex line each; left
                        out when entries.jsonl is the complete log (its own hashes suffice)
    proofs.jsonl        consistency proofs between consecutive checkpoints, and inclusion
                        proofs of the first and last selected entries in the anchor tree

The verifier recomputes the tree from the leaves (or entries), checks every checkpoint root and
signature, every entry's hash and position, and every proof; it names the first thing wrong.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from hashlib import sha256 as _sha256
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import merkle
from audit.log import PRUNE_ACTION, Checkpoint, canonical, check_prune, key_id, load_public_key
from audit.note import NoteError, VerifierKey, split_note, verify_cosignature, verify_note

FORMAT = "governance-audit-bundle/1"
MANIFEST = "manifest.json"
PUBLIC_KEY = "public_key.pem"
CHECKPOINTS = "checkpoints.jsonl"
ENTRIES = "entries.jsonl"
LEAVES = "leaves.txt"
PROOFS = "proofs.jsonl"
# What each witness last cosigned when the bundle was made: {"witness", "key", "size", "note"}.
WITNESSES = "witnesses.jsonl"


class VerificationError(Exception):
    """The bundle or log does not hold; the message names the first bad entry or record."""

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


# --- writing --------------------------------------------------------------------------------


class BundleWriter:
    """Write a bundle as files in a directory, streaming entries and leaves."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=False)
        self._stack = ExitStack()
        self._entries = self._open(ENTRIES)
        self._leaves: IO[str] | None = None
        self._proofs = self._open(PROOFS)
        self._checkpoints = self._open(CHECKPOINTS)
        self.entry_count = 0

    def _open(self, name: str) -> IO[str]:
        return self._stack.enter_context(
            open(self.directory / name, "w", encoding="utf-8", newline="\n")
        )

    def write_public_key(self, pem: bytes) -> None:
        (self.directory / PUBLIC_KEY).write_bytes(pem)

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._checkpoints.write(json.dumps(checkpoint.to_dict(), sort_keys=True) + "\n")

    def add_entry(self, entry: dict[str, Any]) -> None:
        encoded = canonical(entry)
        self._entries.write(merkle.leaf_hash(encoded).hex() + " " + encoded.decode() + "\n")
        self.entry_count += 1

    def add_leaf(self, leaf: bytes) -> None:
        if self._leaves is None:
            self._leaves = self._open(LEAVES)
        self._leaves.write(leaf.hex() + "\n")

    def add_proof(self, proof: dict[str, Any]) -> None:
        self._proofs.write(json.dumps(proof, sort_keys=True) + "\n")

    def add_witnessed(self, record: dict[str, Any]) -> None:
        """A witness's latest cosigned checkpoint of the log (note with both signatures)."""
        with open(self.directory / WITNESSES, "a", encoding="utf-8", newline="\n") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def finish(self, manifest: dict[str, Any]) -> None:
        self._stack.close()
        manifest = {"format": FORMAT, "entries": self.entry_count, **manifest}
        (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def pack(directory: Path, archive: Path) -> None:
    """Pack a bundle directory into a .tar.gz with its files at the top level."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)


@contextmanager
def bundle_writer(out: Path) -> Iterator[BundleWriter]:
    """Write a bundle to `out`: a directory, or a .tar.gz when the name says so."""
    out = Path(out)
    if out.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            writer = BundleWriter(Path(scratch) / "bundle")
            yield writer
            pack(writer.directory, out)
    else:
        writer = BundleWriter(out)
        try:
            yield writer
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise


# --- reading --------------------------------------------------------------------------------


class BundleReader:
    """Open the members of a bundle directory or archive as text streams."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stack = ExitStack()
        self._tar: tarfile.TarFile | None = None
        if self.path.is_file():
            self._tar = self._stack.enter_context(tarfile.open(self.path, "r:*"))  # noqa: SIM115
        elif not self.path.is_dir():
            raise VerificationError(f"no bundle at {self.path}")

    def exists(self, name: str) -> bool:
        if self._tar is None:
            return (self.path / name).is_file()
        try:
            self._tar.getmember(name)
        except KeyError:
            return False
        return True

    def open(self, name: str) -> IO[str]:
        if not self.exists(name):
            raise VerificationError(f"bundle has no {name}")
        if self._tar is None:
            return self._stack.enter_context(open(self.path / name, encoding="utf-8"))
        member = self._tar.extractfile(name)
        if member is None:
            raise VerificationError(f"{name} in the bundle is not a file")
        return self._stack.enter_context(io.TextIOWrapper(member, encoding="utf-8"))

    def open_binary(self, name: str) -> IO[bytes]:
        if not self.exists(name):
            raise VerificationError(f"bundle has no {name}")
        if self._tar is None:
            return self._stack.enter_context(open(self.path / name, "rb"))
        member = self._tar.extractfile(name)
        if member is None:
            raise VerificationError(f"{name} in the bundle is not a file")
        return self._stack.enter_context(member)

    def read_bytes(self, name: str) -> bytes:
        return self.open_binary(name).read()

    def close(self) -> None:
        self._stack.close()


@dataclass
class VerificationReport:
    tree_size: int = 0
    entries: int = 0
    checkpoints: int = 0
    proofs: int = 0
    complete: bool = False
    key_id: str = ""
    witnessed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "proofs": self.proofs,
            "complete": self.complete,
            "key_id": self.key_id,
            "witnessed_by": self.witnessed,
        }


def _load_checkpoints(reader: BundleReader, public_key: Ed25519PublicKey) -> list[Checkpoint]:
    checkpoints: list[Checkpoint] = []
    for line_no, line in enumerate(reader.open(CHECKPOINTS), start=1):
        try:
            checkpoint = Checkpoint.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(f"checkpoints.jsonl line {line_no} is unreadable") from exc
        if not checkpoint.verify(public_key):
            raise VerificationError(
                f"checkpoint at tree size {checkpoint.tree_size} "
                f"(checkpoints.jsonl line {line_no}) has a bad signature"
            )
        if checkpoints and checkpoint.tree_size <= checkpoints[-1].tree_size:
            raise VerificationError(f"checkpoints.jsonl line {line_no}: tree sizes must increase")
        checkpoints.append(checkpoint)
    if not checkpoints:
        raise VerificationError("bundle has no checkpoint")
    return checkpoints


def _seq_of(data: bytes) -> int | None:
    """Read the top-level seq of a canonical entry without parsing the whole of it.

    Keys are sorted, so the top-level "seq" is followed only by "time", a string; and a string
    cannot hold the bytes `,"seq":` (its quotes would be escaped). The last occurrence is
    therefore the top-level one, even when details carry a key named seq.
    """
    at = data.rfind(b',"seq":')
    if at < 0:
        return None
    end = data.find(b",", at + 7)
    try:
        return int(data[at + 7 : end])
    except ValueError:
        return None


def _parse_entry(line: bytes, line_no: int) -> tuple[bytes, int]:
    """Return the leaf hash and seq of one entries.jsonl line, checking its listed hash.

    The entry's bytes are hashed as they stand; the signed checkpoints then vouch for every
    byte, so a full JSON parse adds no assurance and is left to whoever reads the entries.
    """
    data = line[65:].rstrip(b"\n")
    seq = _seq_of(data)
    if (
        line[64:65] != b" "
        or seq is None
        or not data.startswith(b'{"action":')
        or not data.endswith(b'"}')
    ):
        raise VerificationError(f"entries.jsonl line {line_no} is not a well-formed entry")
    computed = _sha256(b"\x00" + data).digest()  # merkle.leaf_hash, inlined for speed
    if computed.hex().encode() != line[:64]:
        raise VerificationError(
            f"entry {seq} (entries.jsonl line {line_no}) does not match its leaf hash: "
            "the entry was altered",
            seq=seq,
        )
    return computed, seq


def verify_bundle(
    path: Path,
    public_key_pem: bytes | None = None,
    witness_keys: list[str] | tuple[str, ...] = (),
    required_witnesses: int = 0,
    witnessed_notes: list[str] | tuple[str, ...] = (),
) -> VerificationReport:
    """Verify a bundle; raise VerificationError naming the first problem.

    `witness_keys` are cosignature verifier keys the caller trusts; a witnessed checkpoint in
    the bundle counts only when its cosignature verifies under one of them, and the log must
    hold that checkpoint's size with its root. `required_witnesses` of them must have spoken.
    `witnessed_notes` are cosigned checkpoints the auditor fetched from witnesses themselves
    (`python -m audit.witness latest`), so an insider cannot leave out or swap what a witness
    saw last: the bundle's log must hold each of them.
    """
    reader = BundleReader(path)
    try:
        return _verify(
            reader, public_key_pem, tuple(witness_keys), required_witnesses, tuple(witnessed_notes)
        )
    finally:
        reader.close()


def _cosigned(note: str, log_key: VerifierKey, keys: list[VerifierKey], where: str):
    """The checkpoint of a note signed by the log and cosigned by a trusted witness key, with
    that witness's name; None when no trusted witness cosigned it."""
    try:
        checkpoint = verify_note(note, log_key)
        body, signatures = split_note(note)
    except NoteError as exc:
        raise VerificationError(
            f"{where}: the checkpoint does not verify under the log's key ({exc})"
        ) from exc
    for key in keys:
        line = next((s.line() for s in signatures if s.name == key.name), None)
        if line is None:
            continue
        try:
            verify_cosignature(body, line, key)
        except NoteError as exc:
            raise VerificationError(
                f"{where}: the cosignature of {key.name} does not verify"
            ) from exc
        return checkpoint, key.name
    return None


def _witnessed(
    reader: BundleReader,
    manifest: dict[str, Any],
    public_key: Ed25519PublicKey,
    trusted: tuple,
    notes: tuple[str, ...],
) -> dict[int, tuple[str, str]]:
    """{size: (root hex, witness name)} of the witnessed checkpoints whose cosignature verifies
    under a trusted key and whose note verifies under the log's key."""
    keys = [VerifierKey.parse(k) for k in trusted]
    if notes and not keys:
        raise VerificationError("a witnessed checkpoint was given but no witness key to check it")
    origin = manifest.get("origin")
    if (notes or reader.exists(WITNESSES)) and not origin:
        raise VerificationError("the bundle names no log origin to check witnesses against")
    if not origin:
        return {}
    log_key = VerifierKey.of(origin, public_key)
    found: dict[int, tuple[str, str]] = {}
    if reader.exists(WITNESSES):
        for line_no, line in enumerate(reader.open(WITNESSES), start=1):
            record = json.loads(line)
            seen = _cosigned(
                record.get("note", ""), log_key, keys, f"witnesses.jsonl line {line_no}"
            )
            if seen is not None:  # a witness the auditor does not trust says nothing
                found[seen[0].size] = (seen[0].root.hex(), seen[1])
    for index, note in enumerate(notes, start=1):
        seen = _cosigned(note, log_key, keys, f"witnessed checkpoint {index}")
        if seen is None:
            raise VerificationError(
                f"witnessed checkpoint {index} carries no cosignature by a trusted witness"
            )
        found[seen[0].size] = (seen[0].root.hex(), seen[1])
    return found


def _verify(
    reader: BundleReader,
    public_key_pem: bytes | None,
    witness_keys: tuple[str, ...] = (),
    required_witnesses: int = 0,
    witnessed_notes: tuple[str, ...] = (),
) -> VerificationReport:
    try:
        manifest = json.loads(reader.open(MANIFEST).read())
    except ValueError as exc:
        raise VerificationError("manifest.json is unreadable") from exc
    if manifest.get("format") != FORMAT:
        raise VerificationError(f"unknown bundle format {manifest.get('format')!r}")
    bundled_pem = reader.read_bytes(PUBLIC_KEY)
    public_key = load_public_key(bundled_pem)
    if public_key_pem is not None:
        trusted = load_public_key(public_key_pem)
        if key_id(trusted) != key_id(public_key):
            raise VerificationError("the bundle's public key is not the trusted one")
        public_key = trusted
    report = VerificationReport(key_id=key_id(public_key))
    checkpoints = _load_checkpoints(reader, public_key)
    anchor = checkpoints[-1]
    if manifest.get("tree_size") != anchor.tree_size:
        raise VerificationError("manifest tree_size is not the last checkpoint's")
    by_size = {c.tree_size: c for c in checkpoints}
    witnessed = _witnessed(reader, manifest, public_key, witness_keys, witnessed_notes)
    if len({name for _root, name in witnessed.values()}) < required_witnesses:
        raise VerificationError(
            f"{required_witnesses} trusted witness(es) must have cosigned the log; "
            f"{len(witnessed)} did"
        )
    for size, (_root, name) in witnessed.items():
        if size > anchor.tree_size:
            raise VerificationError(
                f"witness {name} cosigned {size} entries but the bundle's log holds "
                f"{anchor.tree_size}: the log was truncated or rolled back",
                seq=anchor.tree_size + 1,
            )
    report.witnessed = sorted({name for _root, name in witnessed.values()})
    report.checkpoints = len(checkpoints)
    report.tree_size = anchor.tree_size
    report.complete = bool(manifest.get("complete"))

    proofs = [json.loads(line) for line in reader.open(PROOFS)]
    wanted = {p["seq"] for p in proofs if p.get("type") == "inclusion"}
    seen_leaves: dict[int, bytes] = {}
    compact = merkle.CompactRange()

    def reached(size: int) -> None:
        seen = witnessed.get(size)
        if seen is not None and compact.root().hex() != seen[0]:
            raise VerificationError(
                f"the first {size} entries are not the ones witness {seen[1]} cosigned: the "
                f"log was rewritten",
                seq=1,
            )
        checkpoint = by_size.get(size)
        if checkpoint is not None and compact.root().hex() != checkpoint.root:
            previous = max((s for s in by_size if s < size), default=0)
            raise VerificationError(
                f"checkpoint at tree size {size} does not match the entries: one of entries "
                f"{previous + 1}..{size} was altered, removed, inserted or reordered",
                seq=previous + 1,
            )

    entries = reader.open_binary(ENTRIES)
    if report.complete:
        for line_no, line in enumerate(entries, start=1):
            computed, seq = _parse_entry(line, line_no)
            if seq != compact.size + 1:
                raise VerificationError(
                    f"entries.jsonl line {line_no}: expected entry {compact.size + 1}, found "
                    f"{seq} (an entry is missing, inserted or out of order)",
                    seq=compact.size + 1,
                )
            compact.append(computed)
            if seq in wanted:
                seen_leaves[seq] = computed
            if seq in by_size or seq in witnessed:
                reached(seq)
        report.entries = compact.size
    else:
        parsed = (
            (line_no, *_parse_entry(line, line_no), line)
            for line_no, line in enumerate(entries, start=1)
        )
        next_entry = next(parsed, None)
        last_seq = 0
        # In an unfiltered export every entry left out was pruned: each must be accounted for
        # by a later `audit.prune` entry signed by the log's key over its leaf hash.
        unfiltered = not any((manifest.get("filters") or {}).values())
        blanked: dict[int, bytes] = {}
        for index, leaf_line in enumerate(reader.open(LEAVES)):
            try:
                leaf = bytes.fromhex(leaf_line.strip())
            except ValueError as exc:
                raise VerificationError(f"leaves.txt line {index + 1} is not hex") from exc
            compact.append(leaf)
            present = False
            while next_entry is not None:
                line_no, computed, seq, raw = next_entry
                if seq <= last_seq:
                    raise VerificationError(
                        f"entries.jsonl line {line_no}: entry {seq} is out of order", seq=seq
                    )
                if seq != index + 1:
                    break
                if computed != leaf:
                    raise VerificationError(
                        f"entry {seq} (entries.jsonl line {line_no}) is not the logged entry "
                        f"{seq}: the entry or leaf {seq} was altered",
                        seq=seq,
                    )
                if seq in wanted:
                    seen_leaves[seq] = computed
                if unfiltered and raw[65:].startswith(_PRUNE_PREFIX):
                    for pruned in _accounted(raw, seq, blanked, public_key):
                        blanked.pop(pruned, None)
                present = True
                last_seq = seq
                report.entries += 1
                next_entry = next(parsed, None)
            if unfiltered and not present:
                blanked[index + 1] = leaf
            reached(compact.size)
        if blanked:
            first = min(blanked)
            raise VerificationError(
                f"entry {first} is left out of an unfiltered export and no signed audit.prune "
                f"accounts for it: it was erased",
                seq=first,
            )
        if next_entry is not None:
            line_no, _computed, seq, _raw = next_entry
            raise VerificationError(
                f"entry {seq} (entries.jsonl line {line_no}) lies outside the signed tree",
                seq=seq,
            )
    if compact.size != anchor.tree_size:
        raise VerificationError(
            f"the bundle holds {compact.size} leaves but its last checkpoint signs "
            f"{anchor.tree_size}",
            seq=compact.size + 1,
        )
    if report.entries != manifest.get("entries"):
        raise VerificationError(
            f"manifest lists {manifest.get('entries')} entries, the bundle holds {report.entries}"
        )
    for proof in proofs:
        _check_proof(proof, by_size, seen_leaves)
        report.proofs += 1
    return report


_PRUNE_PREFIX = b'{"action":"' + PRUNE_ACTION.encode() + b'"'


def accounted_prune(
    seq: int, details: Any, blanked: dict[int, bytes], public_key: Ed25519PublicKey
) -> list[int]:
    """The seqs the `audit.prune` entry `seq` accounts for (`audit.log.check_prune`), or a
    VerificationError naming it; every verifier, online and offline, asks through here."""
    try:
        if isinstance(details, str):
            details = json.loads(details)
        return check_prune(details, blanked, public_key)
    except (ValueError, TypeError) as exc:
        raise VerificationError(
            f"audit.prune entry {seq} does not account for what it blanks: {exc}", seq=seq
        ) from exc


def _accounted(
    raw: bytes, seq: int, blanked: dict[int, bytes], public_key: Ed25519PublicKey
) -> list[int]:
    """The seqs a system-domain `audit.prune` line of entries.jsonl accounts for."""
    entry = json.loads(raw[65:])
    if entry.get("domain") is not None:
        return []
    return accounted_prune(seq, entry.get("details"), blanked, public_key)


def _check_proof(
    proof: dict[str, Any], by_size: dict[int, Checkpoint], leaves: dict[int, bytes]
) -> None:
    path = [bytes.fromhex(h) for h in proof.get("proof", [])]
    if proof.get("type") == "consistency":
        old, new = by_size.get(proof["old_size"]), by_size.get(proof["new_size"])
        if old is None or new is None:
            raise VerificationError("a consistency proof names a checkpoint the bundle lacks")
        if not merkle.verify_consistency(
            old.tree_size, new.tree_size, bytes.fromhex(old.root), bytes.fromhex(new.root), path
        ):
            raise VerificationError(
                f"checkpoint {new.tree_size} is not consistent with checkpoint {old.tree_size}"
            )
    elif proof.get("type") == "inclusion":
        seq = proof["seq"]
        checkpoint = by_size.get(proof["tree_size"])
        if checkpoint is None or seq not in leaves:
            raise VerificationError(f"inclusion proof for entry {seq} has nothing to check")
        if not merkle.verify_inclusion(
            leaves[seq], seq - 1, checkpoint.tree_size, path, bytes.fromhex(checkpoint.root)
        ):
            raise VerificationError(f"inclusion proof for entry {seq} fails", seq=seq)
    else:
        raise VerificationError(f"unknown proof type {proof.get('type')!r}")
