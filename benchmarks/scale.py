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

SCRIPT = r"""
import json, os, sys, time
from governance.audit.service import Actor
from governance.config import load_config
from governance.db import Database
from governance.domains.keys import KeyRing
from governance.storage import LocalBlobStore

mode, home, arg, processes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def peak_kib(pid="self"):
    # VmHWM starts afresh at exec, unlike ru_maxrss, which Linux carries over from the parent.
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def children():
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as handle:
            pids += handle.read().split()
    return pids


workers_peak = 0
config = load_config({"GOVERNANCE_HOME": home})
db = Database(config["GOVERNANCE_DATABASE_URL"])
actor = Actor("bench")
keyring, store = KeyRing(home), LocalBlobStore(home + "/blobs")
started = time.perf_counter()
with db.session_scope() as session:
    from governance.datasets import service as datasets

    dataset, domain = datasets.get_dataset(session, 1)
    if mode == "upload":
        with open(arg, "rb") as stream:
            version = datasets.upload_version(
                session, keyring, store, dataset, domain, 2025, stream, actor=actor
            )
        result = {"version": version.number, "records": version.record_count}
    else:
        from governance.pii import service as pii
        from governance.pii.rules import load_rules
        from governance.pii.scanner import open_scanner

        version = datasets.get_version(session, dataset, int(arg))
        rules = load_rules(config["GOVERNANCE_POLICY_DIR"], domain.name)
        with open_scanner(config["PII_MODEL"], processes) as scanner:
            started = time.perf_counter()
            receipt = pii.scan_version(
                session, keyring, store, scanner, version, rules, actor=actor
            )
            seconds = time.perf_counter() - started
            workers_peak = max((peak_kib(pid) for pid in children()), default=0)
        result = {"verdict": receipt.verdict, "records": receipt.records_total,
                  "from_cache": receipt.records_from_cache}
result["seconds"] = time.perf_counter() - started if mode == "upload" else seconds
result["peak_kib"] = peak_kib()
result["children_peak_kib"] = workers_peak
print(json.dumps(result))
"""

SETUP = r"""
import sys
from governance.audit.service import Actor
from governance.config import load_config
from governance.datasets import service as datasets
from governance.datasets.models import DatasetCreate
from governance.db import Database
from governance.domains.models import DomainCreate
from governance.domains.service import create_domain
from governance.instance import init_instance

config = load_config({"GOVERNANCE_HOME": sys.argv[1]})
init_instance(config)
with Database(config["GOVERNANCE_DATABASE_URL"]).session_scope() as session:
    actor = Actor("bench")
    domain = create_domain(session, DomainCreate(name="consumer-tax", jurisdiction="US",
                                                 retention_days=2555), actor=actor)
    datasets.create_dataset(session, domain, DatasetCreate(name="scale"), actor=actor)
"""


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
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_size(scratch: Path, size_mb: int, scan: bool, processes: int) -> dict:
    home = scratch / f"home-{size_mb}"
    subprocess.run([sys.executable, "-c", SETUP, str(home)], check=True, capture_output=True)
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
