"""Dataset scale benchmarks for BENCHMARKS.md: upload and scan peak memory by input size, and
scan throughput by number of scanner processes.

Each upload and each scan runs in its own fresh process, so that process's peak resident set
(`ru_maxrss`) is the measurement; a parallel scan's worker processes are reported apart.
Records are Faker tax questions made unique by a case number, so no scan is served from the
cache by accident.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MB = 1 << 20


def write_corpus(path: Path, size: int) -> int:
    """Write about `size` bytes of unique JSONL tax questions; return the record count."""
    from governance.pii.synthetic import generate

    texts = [g["text"] for g in generate(5000, seed=21)]
    written = count = 0
    with path.open("w") as out:
        for number, text in zip(itertools.count(), itertools.cycle(texts)):
            line = json.dumps({"text": f"Case {number}. {text}"}) + "\n"
            out.write(line)
            written += len(line)
            count += 1
            if written >= size:
                return count
    return count


def _run(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.scripts.scale_step", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_size(scratch: Path, size_mb: int, scan: bool, processes: int) -> dict:
    home = scratch / f"home-{size_mb}"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.scripts.scale_setup", str(home)],
        check=True,
        capture_output=True,
    )
    corpus = scratch / f"corpus-{size_mb}.jsonl"
    write_corpus(corpus, size_mb * MB)
    upload = _run("upload", str(home), str(corpus), "1")
    corpus.unlink()
    row = {"size_mb": size_mb, "records": upload["records"], "upload": upload}
    if scan:
        row["scan"] = _run("scan", str(home), str(upload["version"]), str(processes))
    return row


def scaling(model: str, policy_dir: str, counts: tuple[int, ...]) -> list[tuple[int, float]]:
    """Scan throughput (KB/s) of the same texts with 1..n scanner processes, start-up excluded."""
    from governance.pii.rules import load_rules
    from governance.pii.scanner import open_scanner
    from governance.pii.synthetic import generate

    rules = load_rules(policy_dir, "consumer-tax")
    texts = [g["text"] for g in generate(4000, seed=5)]
    kb = sum(len(t.encode()) for t in texts) / 1024
    rows = []
    for processes in counts:
        with open_scanner(model, processes) as scanner:
            list(scanner.scan_texts(texts[:64], rules))  # warm every process up
            started = time.perf_counter()
            for _ in scanner.scan_texts(texts, rules):
                pass
            rows.append((processes, kb / (time.perf_counter() - started)))
    return rows


def run_scale_bench(
    model: str,
    policy_dir: str,
    scan_sizes: tuple[int, ...] = (10, 100),
    upload_sizes: tuple[int, ...] = (1024,),
    echo: Callable[[str], None] = print,
) -> str:
    cpus = os.cpu_count() or 1
    counts = tuple(sorted({1, cpus}))
    echo(f"scan throughput with {counts} processes ...")
    speeds = scaling(model, policy_dir, counts)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in (*scan_sizes, *upload_sizes):
            echo(f"{size} MB: upload{' and scan' if size in scan_sizes else ''} ...")
            rows.append(measure_size(Path(scratch), size, size in scan_sizes, cpus))
    table = []
    for row in rows:
        up = row["upload"]
        cells = [
            f"{row['size_mb']:,} MB",
            f"{row['records']:,}",
            f"{up['seconds']:.1f}",
            f"{row['size_mb'] / up['seconds']:.1f}",
            f"{up['peak_kib'] / 1024:.0f} MiB",
        ]
        if "scan" in row:
            scan = row["scan"]
            cells += [
                f"{scan['seconds']:.0f}",
                f"{row['size_mb'] * 1024 / scan['seconds']:.0f}",
                f"{scan['peak_kib'] / 1024:.0f} MiB",
                f"{scan['children_peak_kib'] / 1024:.0f} MiB",
            ]
        else:
            cells += ["-", "-", "-", "-"]
        table.append("| " + " | ".join(cells) + " |")
    speed_rows = [f"| {n} | {speed:.1f} | {speed / speeds[0][1]:.2f}x |" for n, speed in speeds]
    return "\n".join(
        [
            "## Dataset uploads and scans at scale",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on "
            f"{platform.machine()}, {cpus} cores; SQLite instance on local disk; spaCy model "
            f"`{model}`. Inputs are unique Faker tax questions (`Case N. ...`, about 100 bytes "
            "a record). Each upload and each scan ran in a fresh process; peak is that "
            f"process's maximum resident set. Scans used {cpus} scanner processes (the "
            "`workers peak` column is the largest of them).",
            "",
            "| input | records | upload s | upload MB/s | upload peak | scan s | scan KB/s "
            "| scan peak | workers peak |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *table,
            "",
            "Scan throughput by scanner processes (4,000 tax questions, model start-up excluded):",
            "",
            "| processes | KB/s | speed-up |",
            "| ---: | ---: | ---: |",
            *speed_rows,
            "",
            "Targets: a 1 GB upload in bounded memory; scan peak memory flat from 10 MB to "
            "100 MB; throughput that grows with processes.",
            "",
        ]
    )
