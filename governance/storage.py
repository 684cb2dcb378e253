"""Blob storage for encrypted dataset versions: local directory by default.

Writing is two-phase so that a crash leaves nothing behind that a later sweep cannot settle:
a blob is written under staging/ with the writer's pid in its name, becomes durable there,
the database row that names it commits, and only then is it moved to its final key. The
sweep deletes staged blobs of dead writers that no row names, and finishes the move for
those a committed row names. A production store (any fsspec URL) implements the same
interface.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Protocol

STAGING = ".staging"


class BlobStore(Protocol):
    def stage(self, uid: str) -> AbstractContextManager[IO[bytes]]: ...
    def publish(self, uid: str, key: str) -> None: ...
    def open(self, key: str) -> IO[bytes]: ...
    def delete(self, key: str) -> None: ...
    def sweep(self, committed: Callable[[str], str | None]) -> dict[str, int]: ...


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    """Blobs as files under one directory (GOVERNANCE_HOME/blobs by default)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _staged(self, uid: str, pid: int | None = None) -> Path:
        return self.root / STAGING / f"{uid}.{pid or os.getpid()}.part"

    @contextmanager
    def stage(self, uid: str) -> Iterator[IO[bytes]]:
        """Write a new blob under staging; it is removed if the block fails."""
        path = self._staged(uid)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Owner-only from the first byte (0600), whatever the process umask.
        handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            path.unlink(missing_ok=True)
            raise
        handle.close()

    def publish(self, uid: str, key: str) -> None:
        """Move a staged blob to its final key, once its database row has committed."""
        target = self.root / key
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(self._staged(uid), target)
        fsync_directory(target.parent)

    def discard(self, uid: str) -> None:
        """Remove a staged blob whose row did not commit."""
        self._staged(uid).unlink(missing_ok=True)

    def open(self, key: str) -> IO[bytes]:
        return open(self.root / key, "rb")

    def delete(self, key: str) -> None:
        """Remove a blob for good (the version's data key is destroyed as well)."""
        (self.root / key).unlink(missing_ok=True)

    def sweep(self, committed: Callable[[str], str | None]) -> dict[str, int]:
        """Settle staged blobs of writers that died: publish those a committed row names
        (`committed(uid)` returns its key), delete the rest."""
        counts = {"published": 0, "deleted": 0}
        staging = self.root / STAGING
        if not staging.is_dir():
            return counts
        for path in staging.glob("*.part"):
            uid, _, pid_text = path.name.removesuffix(".part").rpartition(".")
            if pid_text.isdigit() and pid_alive(int(pid_text)):
                continue
            key = committed(uid)
            if key is None:
                path.unlink(missing_ok=True)
                counts["deleted"] += 1
            else:
                target = self.root / key
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                try:
                    os.replace(path, target)
                except FileNotFoundError:
                    continue  # another process settled it first: nothing left to do
                counts["published"] += 1
        return counts
