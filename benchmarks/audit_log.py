"""`govern bench` / `make bench`: measure the audit log and write BENCHMARKS.md.

- durable appends per second through AuditLog.append (the path every request takes), with
  many concurrent callers sharing group commits, on SQLite and on PostgreSQL;
- exporting a 1,000,000-entry log as a bundle, and verifying that bundle with
  `python -m audit verify` in a separate process on one core, with its peak memory.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from governance.audit.service import AuditEvent, AuditLog, append_events
from governance.config import load_config
from governance.db import Database
from governance.instance import init_instance


def bench_event(i: int) -> AuditEvent:
    return AuditEvent(
        principal=f"bench-{i % 50}",
        action="query",
        object="model/tax-assistant",
        domain="consumer-tax",
        decision="allow" if i % 7 else "deny",
        policy_hash="ab" * 32,
        request_id=f"{i:032x}",
        details={"rule": ["model-consumer", "*", "model/*", "query"], "latency_ms": i % 300},
    )


def bench_appends(database_url: str, home: str, total: int, threads: int) -> dict[str, Any]:
    """Append `total` events from `threads` callers, each waiting until its entry is durable."""
    db = Database(database_url)
    audit_log = AuditLog(db, home, checkpoint_seconds=0)
    audit_log.append(bench_event(0))  # start the writer and warm the connection
    per_thread = total // threads
    batches: list[int] = []
    original = audit_log._write

    def counting_write(batch):
        batches.append(len(batch))
        original(batch)

    audit_log._write = counting_write  # type: ignore[method-assign]

    def caller(offset: int) -> None:
        for i in range(per_thread):
            audit_log.append(bench_event(offset + i))

    workers = [threading.Thread(target=caller, args=(t * per_thread,)) for t in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    audit_log.close()
    db.dispose()
    appended = per_thread * threads
    return {
        "appends": appended,
        "threads": threads,
        "seconds": round(elapsed, 2),
        "per_second": round(appended / elapsed),
        "mean_batch": round(sum(batches) / len(batches), 1),
    }


def fill_log(database_url: str, total: int, chunk: int = 10000) -> None:
    """Append `total` entries quickly, in large transactions, to have a log to export."""
    db = Database(database_url)
    try:
        done = 0
        while done < total:
            size = min(chunk, total - done)
            with db.engine.begin() as connection:
                append_events(connection, [bench_event(done + i) for i in range(size)])
            done += size
    finally:
        db.dispose()


def run_measured(command: list[str]) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run a command on one core; return wall seconds, its own peak RSS in MiB, the result.

    A fresh wrapper process runs it, so the peak is this command's alone.
    """
    started = time.perf_counter()
    result = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "benchmarks.scripts.peak", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    return elapsed, peak_kib // 1024, result


def bench_verify(entries: int, workdir: Path) -> dict[str, Any]:
    """Fill a SQLite log, export it as a bundle, and verify the bundle offline."""
    home = workdir / "verify-home"
    config = load_config({"GOVERNANCE_HOME": str(home)})
    init_instance(config)
    started = time.perf_counter()
    fill_log(config["GOVERNANCE_DATABASE_URL"], entries)
    fill_seconds = time.perf_counter() - started
    bundle = workdir / "bundle"
    export_seconds, export_peak, exported = run_measured(
        [
            sys.executable,
            "-m",
            "benchmarks.scripts.export_bundle",
            config["GOVERNANCE_DATABASE_URL"],
            str(home),
            str(bundle),
        ]
    )
    if exported.returncode != 0:
        raise RuntimeError(exported.stderr)
    verify_seconds, verify_peak, verified = run_measured(
        [sys.executable, "-m", "audit", "verify", str(bundle), "--trust-bundle-key"]
    )
    if verified.returncode != 0:
        raise RuntimeError(verified.stderr)
    size = sum(p.stat().st_size for p in bundle.iterdir())
    total = entries + 1  # the admin principal's creation is in the log too
    return {
        "entries": total,
        "fill_seconds": round(fill_seconds, 1),
        "export_seconds": round(export_seconds, 1),
        "export_peak_mib": export_peak,
        "bundle_mib": round(size / 2**20),
        "verify_seconds": round(verify_seconds, 2),
        "verify_per_second": round(total / verify_seconds),
        "verify_peak_mib": verify_peak,
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
    )


def run_bench(
    postgres_url: str | None,
    appends: int,
    threads: int,
    verify_entries: int,
    echo: Callable[[str], None] = print,
) -> str:
    """Run the audit benchmarks and return the Markdown section for BENCHMARKS.md."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="governance-bench-") as scratch:
        workdir = Path(scratch)
        home = workdir / "append-home"
        config = load_config({"GOVERNANCE_HOME": str(home)})
        init_instance(config)
        echo(f"appending {appends} entries from {threads} threads to SQLite ...")
        rows.append(
            (
                "SQLite (WAL, synchronous=FULL)",
                bench_appends(config["GOVERNANCE_DATABASE_URL"], str(home), appends, threads),
            )
        )
        if postgres_url:
            pg_config = load_config(
                {"GOVERNANCE_HOME": str(home), "GOVERNANCE_DATABASE_URL": postgres_url}
            )
            init_instance(pg_config)
            echo(f"appending {appends} entries from {threads} threads to PostgreSQL ...")
            rows.append(
                (
                    "PostgreSQL 15 (synchronous_commit=on)",
                    bench_appends(
                        pg_config["GOVERNANCE_DATABASE_URL"], str(home), appends, threads
                    ),
                )
            )
        echo(f"filling, exporting and verifying a {verify_entries}-entry log ...")
        verify = bench_verify(verify_entries, workdir)

    lines = [
        "## Audit log",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on: {machine()}.",
        "",
        "### Durable appends through the service's append path",
        "",
        f"`AuditLog.append` from {threads} concurrent threads, each call returning only after "
        "its entry is committed (group commit: one transaction and one fsync per batch).",
        "",
        "| database | appends | seconds | appends/s | mean batch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['appends']} | {r['seconds']} | {r['per_second']} | {r['mean_batch']} |"
        )
    lines += [
        "",
        "Target: 5,000 appends/s or more.",
        "",
        "### Exporting and verifying a bundle",
        "",
        f"A SQLite log of {verify['entries']} entries (filled in {verify['fill_seconds']} s), "
        "exported whole as a bundle by `write_bundle` and verified by `python -m audit "
        "verify` in a separate process pinned to one core (`taskset -c 0`).",
        "",
        "| step | seconds | entries/s | peak RSS |",
        "| --- | ---: | ---: | ---: |",
        f"| export ({verify['bundle_mib']} MiB bundle) | {verify['export_seconds']} | "
        f"{round(verify['entries'] / verify['export_seconds'])} | "
        f"{verify['export_peak_mib']} MiB |",
        f"| verify | {verify['verify_seconds']} | {verify['verify_per_second']} | "
        f"{verify['verify_peak_mib']} MiB |",
        "",
        "Target: verify 300,000 entries/s or more on one core, in constant memory. Seconds "
        "include the interpreter's start-up.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: str, heading: str, section: str) -> None:
    """Replace (or add) the section that starts with `heading` in a Markdown file."""
    target = Path(path)
    text = target.read_text() if target.exists() else "# Benchmarks\n\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        following = text.find("\n## ", start + len(heading))
        rest = text[following + 1 :] if following >= 0 else ""
        # One blank line between this section and the next, whatever the section ends with.
        text = text[:start] + section.rstrip("\n") + ("\n\n" + rest if rest else "\n")
    target.write_text(text.rstrip("\n") + "\n")
