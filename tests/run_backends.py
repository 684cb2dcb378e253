"""Run the suite on SQLite and on PostgreSQL at once, one pytest process per database.

`make test` calls this. Tests that use no database run once, in the SQLite process. Each process
has its own temporary directory; output lines carry the database's name; the exit status is the
worse of the two. With GOVERNANCE_TEST_DATABASES naming one database, one process runs.
Arguments are passed to pytest.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The tests' instances (SQLite files, keys, blobs) live in pytest's temporary directory. They
# commit and fsync often: on a disk each fsync costs milliseconds, on a RAM-backed filesystem
# nothing (SQLite tests of the audit, dataset and domain packages: 22 s on disk, 12.5 s in
# /dev/shm, this VM). A kill -9 test kills a process, not the machine, so RAM keeps what it
# checks. GOVERNANCE_TEST_TMPDIR chooses another place.
SHM = Path("/dev/shm")
SHM_FREE_BYTES = 8 * 2**30


def temp_root() -> Path:
    if os.environ.get("GOVERNANCE_TEST_TMPDIR"):
        return Path(os.environ["GOVERNANCE_TEST_TMPDIR"])
    try:
        stats = os.statvfs(SHM)
        if os.access(SHM, os.W_OK) and stats.f_bavail * stats.f_frsize >= SHM_FREE_BYTES:
            return SHM
    except OSError:
        pass
    return Path(os.environ.get("TMPDIR", "/tmp"))


TEMP_ROOT = temp_root()
# Two checkouts testing at once must not share (and wipe) each other's temporary directories.
CHECKOUT = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]


def basetemp(name: str) -> Path:
    """pytest's temporary directory for one database's process of this checkout."""
    return TEMP_ROOT / f"governance-tests-{CHECKOUT}-{name}"


# pytest's own summary lines: repeated once both processes end, so that the last lines of a
# CI log name every failure of both databases, however long a failure's report runs.
SUMMARY = re.compile(r"^(FAILED|ERROR) |^=* ?(\d+ \w+, )*\d+ \w+ in [\d.]+s")


def pump(name: str, stream, lock: threading.Lock, summary: list[str]) -> None:
    for line in stream:
        if SUMMARY.match(line):
            summary.append(f"[{name}] {line}")
        with lock:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()


def main(argv: list[str]) -> int:
    wanted = [
        b.strip()
        for b in os.environ.get("GOVERNANCE_TEST_DATABASES", "sqlite,postgresql").split(",")
        if b.strip()
    ]
    if len(wanted) == 1:
        temp = basetemp(wanted[0])
        code = subprocess.call(
            [sys.executable, "-m", "pytest", f"--basetemp={temp}", *argv], cwd=ROOT
        )
        forget([temp], [code])
        return code
    lock = threading.Lock()
    processes, pumps, basetemps = [], [], []
    summary: list[str] = []
    for index, name in enumerate(wanted):
        env = {**os.environ, "GOVERNANCE_TEST_DATABASES": name}
        # Two suites share the machine's cores: one thread each for torch's (and the
        # tokenizers') own pools, in the suites and the trainers they start, rather than
        # twice as many threads as cores spinning against each other.
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(variable, "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        if index > 0:
            env["GOVERNANCE_TEST_DATABASE_TESTS_ONLY"] = "1"
        else:
            # A few tests that use no database run in the second process instead, so the two
            # finish at about the same time (tests/conftest.py, HANDED_OVER).
            env["GOVERNANCE_TEST_HAND_OVER"] = "1"
        basetemps.append(basetemp(name))
        command = [
            sys.executable,
            "-m",
            "pytest",
            f"--basetemp={basetemps[-1]}",
            "-p",
            "no:cacheprovider",
            *argv,
        ]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        thread = threading.Thread(target=pump, args=(name, process.stdout, lock, summary))
        thread.start()
        processes.append(process)
        pumps.append(thread)
    codes = [p.wait() for p in processes]
    for thread in pumps:
        thread.join()
    if summary:
        print("\nsummary of both databases:")
        sys.stdout.writelines(summary)
    for name, code in zip(wanted, codes, strict=True):
        print(f"{name}: pytest exited {code}")
    forget(basetemps, codes)
    return max(codes)


def forget(basetemps: list[Path], codes: list[int]) -> None:
    """Remove a passing run's temporary directories from a RAM-backed filesystem (they would
    hold memory until the next run); a failing run's stay, to be looked at."""
    if TEMP_ROOT == SHM and not any(codes):
        for path in basetemps:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
