"""The audit page's checkpoint status: the log verified up to its newest signed checkpoint.

Each process verifies the log once in full, then goes on from where it stopped as checkpoints
arrive. The work runs in a background thread: a page waits for it briefly (enough for a log of
some tens of thousands of entries) and otherwise says that verification is under way, so a
large log never holds a page for long (measured in BENCHMARKS.md, "Console").
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from audit.bundle import VerificationError
from governance.audit.service import latest_checkpoint
from governance.db import Database, utcnow
from governance.flows.log_export import LogVerification, verify_log

# How long a page waits for a verification under way before answering without its result.
PAGE_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class StatusView:
    """What the page shows: the last result, a failure, and whether work is under way."""

    result: LogVerification | None
    problem: str | None
    running_upto: int | None
    checked_at: dt.datetime | None
    has_checkpoint: bool


class CheckpointStatus:
    """Per-process verification state, shared by the request threads of one process."""

    def __init__(self, db: Database, public_key) -> None:
        self.db = db
        self.public_key = public_key
        self.lock = threading.Lock()
        self.result: LogVerification | None = None
        self.problem: str | None = None
        self.checked_at: dt.datetime | None = None
        self.worker: threading.Thread | None = None
        self.running_upto: int | None = None

    def _verify(self, upto: int, resume) -> None:
        try:
            with self.db.session_scope() as session:
                result = verify_log(session, self.public_key, upto=upto, resume=resume)
        except VerificationError as exc:
            with self.lock:
                self.problem, self.checked_at = str(exc), utcnow()
        else:
            with self.lock:
                self.result, self.problem, self.checked_at = result, None, utcnow()
        finally:
            with self.lock:
                self.running_upto = None

    def view(self, session, *, from_start: bool = False, wait: float = PAGE_WAIT_SECONDS):
        """Start what the newest checkpoint needs (if anything), wait briefly, and report."""
        checkpoint = latest_checkpoint(session)
        if checkpoint is None:
            return StatusView(None, None, None, None, has_checkpoint=False)
        with self.lock:
            known = self.result
            stale = known is None or known.verified_upto != checkpoint.tree_size
            # A failure stays on the page until someone asks for a run from entry 1.
            needed = from_start or (stale and self.problem is None)
            if needed and self.running_upto is None:
                resume = None if from_start or known is None else known.progress
                if from_start:
                    self.problem = None
                self.running_upto = checkpoint.tree_size
                self.worker = threading.Thread(
                    target=self._verify,
                    args=(checkpoint.tree_size, resume),
                    name="console-verify",
                    daemon=True,
                )
                self.worker.start()
            worker = self.worker
        if worker is not None:
            worker.join(wait)
        with self.lock:
            return StatusView(
                self.result, self.problem, self.running_upto, self.checked_at, has_checkpoint=True
            )
