"""Witnesses of the audit log: who must see every checkpoint, and what they remember.

Every new checkpoint is also a C2SP tlog-checkpoint note (`audit.note`), and is sent to the
witnesses named in `AUDIT_WITNESSES` with a consistency proof from the size each one last
cosigned (c2sp.org/tlog-witness). A witness keeps the largest checkpoint it cosigned outside our
database and refuses to cosign one that does not extend it, so an insider who truncates the log,
or restores an older copy of the database, cannot make it agree again: `govern audit verify`,
export and the offline verifier compare the log with what each witness last cosigned.

`AUDIT_WITNESSES` is a comma-separated list of
- `dir:PATH`: a witness whose state directory is PATH (another volume or host mount), run in
  this process; create it with `python -m audit.witness init PATH --name NAME --log-key VKEY`;
- `URL=VKEY`: a witness served over HTTP (`python -m audit.witness serve`, or any
  tlog-witness), with its cosignature verifier key.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from audit.bundle import VerificationError
from audit.note import COSIGNATURE_V1, NoteError, VerifierKey, split_note, verify_cosignature
from audit.note import verify_note as verify_checkpoint_note
from audit.witness import CONFIG_FILE as WITNESS_CONFIG
from audit.witness import Witness
from governance.audit.models import AuditCosignature

log = logging.getLogger(__name__)


@dataclass
class WitnessReply:
    status: int
    body: str


class WitnessClient:
    """A witness as the log sees it."""

    name: str
    key: VerifierKey

    def submit(self, request: str) -> WitnessReply:
        raise NotImplementedError

    def latest(self, origin: str) -> str | None:
        raise NotImplementedError


class DirectoryWitness(WitnessClient):
    """A witness whose state directory this process can reach (in-process, file-backed)."""

    def __init__(self, directory: str) -> None:
        self.witness = Witness(directory)
        self.key = self.witness.verifier_key()
        self.name = self.key.name

    def submit(self, request: str) -> WitnessReply:
        answer = self.witness.add_checkpoint(request)
        return WitnessReply(answer.status, answer.body)

    def latest(self, origin: str) -> str | None:
        return self.witness.latest(origin)


class HttpWitness(WitnessClient):
    """A tlog-witness over HTTP, with the cosignature key we trust for it."""

    def __init__(self, url: str, key: VerifierKey, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.name = key.name
        self.timeout = timeout

    def _call(self, request: urllib.request.Request) -> WitnessReply:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return WitnessReply(response.status, response.read().decode())
        except urllib.error.HTTPError as exc:
            with exc:
                return WitnessReply(exc.code, exc.read().decode(errors="replace"))

    def submit(self, request: str) -> WitnessReply:
        # The URL's scheme was checked to be http(s) when the configuration was read.
        url = f"{self.url}/add-checkpoint"
        call = urllib.request.Request(url, data=request.encode(), method="POST")  # noqa: S310
        return self._call(call)

    def latest(self, origin: str) -> str | None:
        query = urllib.parse.urlencode({"origin": origin})
        reply = self._call(urllib.request.Request(f"{self.url}/latest?{query}"))  # noqa: S310
        return reply.body if reply.status == 200 else None


LOCAL_WITNESS_DIR = "witness"


def local_witness_dir(home: str | os.PathLike) -> Path:
    """The instance's own witness: a directory beside the database, with its own key, that
    cosigns every checkpoint and remembers the newest one (created by `govern init`)."""
    return Path(home) / LOCAL_WITNESS_DIR


def ensure_local_witness(home: str | os.PathLike, log_key: VerifierKey) -> bool:
    """Create the local witness, trusting the log's key; True when it was created."""
    directory = local_witness_dir(home)
    if (directory / WITNESS_CONFIG).exists():
        return False
    Witness.init(directory, f"local-witness/{log_key.name}", {log_key.name: log_key.encode()})
    return True


def configured_witnesses(
    spec: str | None, home: str | os.PathLike | None = None
) -> list[WitnessClient]:
    """Parse AUDIT_WITNESSES. Left empty, the instance's local witness (when `govern init`
    made one); `none`, no witness at all."""
    witnesses: list[WitnessClient] = []
    spec = (spec or "").strip()
    if spec.lower() == "none":
        return witnesses
    if not spec and home is not None:
        local = local_witness_dir(home)
        return [DirectoryWitness(str(local))] if (local / WITNESS_CONFIG).exists() else []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("dir:"):
            witnesses.append(DirectoryWitness(item[4:]))
        elif item.startswith(("http://", "https://")) and "=" in item:
            url, vkey = item.split("=", 1)
            key = VerifierKey.parse(vkey)
            if key.kind != COSIGNATURE_V1:
                raise ValueError(f"witness {url}: give its cosignature/v1 verifier key")
            witnesses.append(HttpWitness(url, key))
        else:
            raise ValueError(f"AUDIT_WITNESSES: {item!r} is neither dir:PATH nor URL=VKEY")
    return witnesses


def _request(old: int, proof: Sequence[bytes], note: str) -> str:
    lines = [f"old {old}", *(base64.b64encode(p).decode() for p in proof)]
    return "\n".join(lines) + "\n\n" + note


def request_cosignatures(
    session: Session,
    note: str,
    size: int,
    witnesses: Sequence[WitnessClient],
    proof: Callable[[int, int], list[bytes]],
) -> dict[str, str]:
    """Send a new checkpoint note to every witness; store and return the cosignatures.

    A witness that is down or refuses is logged and skipped: the log keeps working, and
    verification reports the gap.
    """
    body, _signatures = split_note(note)
    cosigned: dict[str, str] = {}
    for witness in witnesses:
        known = session.exec(
            select(sa.func.max(AuditCosignature.tree_size)).where(
                AuditCosignature.witness == witness.name
            )
        ).one()
        old = int(known or 0)
        try:
            for _attempt in range(2):
                if old > size:
                    raise NoteError(f"it has cosigned {old} entries, more than the log's {size}")
                reply = witness.submit(_request(old, proof(old, size) if old else [], note))
                if reply.status == 409 and reply.body.strip().isdigit():
                    old = int(reply.body.strip())  # it knows a size we did not record
                    continue
                break
            if reply.status != 200:
                raise NoteError(f"HTTP {reply.status}: {reply.body.strip()[:200]}")
            line = next(
                (
                    x + "\n"
                    for x in reply.body.splitlines()
                    if x.startswith(f"\u2014 {witness.name} ")
                ),
                None,
            )
            if line is None:
                raise NoteError("no cosignature by its key in the reply")
            verify_cosignature(body, line, witness.key)
        except (NoteError, OSError) as exc:
            log.warning("witness %s did not cosign tree size %d: %s", witness.name, size, exc)
            continue
        session.add(AuditCosignature(witness=witness.name, tree_size=size, line=line))
        cosigned[witness.name] = line
    session.commit()
    return cosigned


@dataclass(frozen=True)
class Witnessed:
    """What a witness last cosigned of our log."""

    witness: str
    key: str  # its verifier key
    size: int
    root: bytes
    note: str  # the checkpoint note with our signature and its cosignature

    def as_dict(self) -> dict:
        return {"witness": self.witness, "key": self.key, "size": self.size, "note": self.note}


def witnessed_state(witness: WitnessClient, origin: str, log_key: VerifierKey) -> Witnessed | None:
    """The witness's latest cosigned checkpoint of our log, both signatures verified."""
    note = witness.latest(origin)
    if note is None:
        return None
    checkpoint = verify_checkpoint_note(note, log_key)
    body, signatures = split_note(note)
    lines = [s.line() for s in signatures if s.name == witness.name]
    if not lines:
        raise VerificationError(f"witness {witness.name} returned a checkpoint it did not cosign")
    verify_cosignature(body, lines[0], witness.key)
    return Witnessed(witness.name, witness.key.encode(), checkpoint.size, checkpoint.root, note)


def check_witnesses(
    witnesses: Sequence[WitnessClient],
    origin: str,
    log_key: VerifierKey,
    log_size: int,
    root_at: Callable[[int], bytes],
) -> list[Witnessed]:
    """Fail unless the log holds at least what every witness cosigned, with the same root."""
    seen = []
    for witness in witnesses:
        try:
            state = witnessed_state(witness, origin, log_key)
        except (NoteError, OSError) as exc:
            raise VerificationError(f"witness {witness.name}: {exc}") from exc
        if state is None:
            continue
        if state.size > log_size:
            raise VerificationError(
                f"witness {witness.name} cosigned {state.size} entries but the log holds "
                f"{log_size}: the log was truncated or rolled back",
                seq=log_size + 1,
            )
        if root_at(state.size) != state.root:
            raise VerificationError(
                f"the log's first {state.size} entries are not the ones witness "
                f"{witness.name} cosigned: the log was rewritten"
            )
        seen.append(state)
    return seen
