"""How cost grows with the work, for BENCHMARKS.md (issue 36): a scan by records and by job
runner processes, the upload and the training bundle beside it, audit verification by
entries, and authorization by lines of policy.

A scan here is the product's own: a version uploaded in shards, a `scan` job submitted, and
`govern jobs run` processes (warm: the scanner loaded before the clock starts) that take its
`scan-shard` jobs. Every scan of a size starts from an empty findings cache, so no runner
count is helped by another's work; the receipts' digests are compared across runner counts.
CPU seconds are the runners' own (user + system, from /proc), less what loading the scanner
cost; peak memory is the largest runner's resident high-water mark.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.audit_log import bench_verify, machine

MB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def write_records(path: Path, count: int) -> int:
    """`count` unique Faker tax questions as JSONL (about 100 bytes each); the bytes."""
    from governance.pii.synthetic import generate

    texts = [g["text"] for g in generate(5000, seed=21)]
    written = 0
    with path.open("w") as out:
        for number in range(count):
            line = json.dumps({"text": f"Case {number}. {texts[number % len(texts)]}"}) + "\n"
            out.write(line)
            written += len(line)
    return written


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _step(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, check=False, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _runners(home: Path, count: int, scratch: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "GOVERNANCE_HOME": str(home), "SCAN_WORKER_WARM": "1"}
    env.pop("GOVERNANCE_DATABASE_URL", None)
    processes, logs = [], []
    for index in range(count):
        log = scratch / f"runner-{index}.log"
        logs.append(log)
        with log.open("w") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "governance.cli", "jobs", "run", "--poll", "0.1"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                )
            )
    deadline = time.monotonic() + 300
    while not all("scanner loaded" in log.read_text() for log in logs):
        if time.monotonic() > deadline:
            raise RuntimeError("runners did not start: " + logs[0].read_text()[-1000:])
        time.sleep(0.2)
    return processes


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def scan_with_runners(home: Path, runners: int, scratch: Path) -> dict[str, Any]:
    """One cold scan of version 1 by `runners` warm job runner processes."""
    database = home / "governance.db"
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM scan_cache")
    processes = _runners(home, runners, scratch)
    try:
        before = {p.pid: cpu_seconds(p.pid) for p in processes}
        started = time.perf_counter()
        job = _step("benchmarks.scripts.growth_step", "submit", str(home))["job"]
        while True:
            with sqlite3.connect(database) as connection:
                state, result = connection.execute(
                    "SELECT state, result FROM jobs WHERE uid = ?", (job,)
                ).fetchone()
            if state in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        cpu = sum(cpu_seconds(p.pid) - before[p.pid] for p in processes)
        peak = max(peak_mib(p.pid) for p in processes)
    finally:
        _stop(processes)
    if state != "succeeded":
        raise RuntimeError(f"the scan failed: {result}")
    outcome = json.loads(result)
    return {
        "runners": runners,
        "seconds": seconds,
        "cpu": cpu,
        "peak_mib": peak,
        "digest": outcome["receipt"]["digest"],
        "shards": outcome["shards"]["count"],
        "by_worker": len(outcome["shards"]["by_worker"]),
    }


def scan_growth(
    records: tuple[int, ...],
    runners: tuple[int, ...],
    shard_bytes: int,
    scratch: Path,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    rows = []
    for count in records:
        home = scratch / f"home-{count}"
        subprocess.run(
            [sys.executable, "-m", "benchmarks.scripts.scale_setup", str(home)],
            check=True,
            capture_output=True,
        )
        corpus = scratch / f"corpus-{count}.jsonl"
        size = write_records(corpus, count)
        env = {**os.environ, "DATASET_SHARD_BYTES": str(shard_bytes)}
        echo(f"{count:,} records ({size / MB:.1f} MB): upload ...")
        upload = _step(
            "benchmarks.scripts.scale_step", "upload", str(home), str(corpus), "1", env=env
        )
        corpus.unlink()
        scans = []
        for number in runners:
            echo(f"{count:,} records: scan with {number} runner(s) ...")
            scans.append(scan_with_runners(home, number, scratch))
        echo(f"{count:,} records: the training bundle ...")
        bundle = _step("benchmarks.scripts.growth_step", "bundle", str(home))
        rows.append(
            {"records": count, "mb": size / MB, "upload": upload, "scans": scans, "bundle": bundle}
        )
    return rows


def authz_growth(source: Path, lines: tuple[int, ...], scratch: Path, echo) -> list[dict]:
    """Load time, memory and decision latency of the compiled policy by lines of policy."""
    from benchmarks.policy_generator import generate
    from governance.authz.policy import PolicySet

    rows = []
    for target in lines:
        # A fifth of the lines are rules (domains x families x 4 actions), the rest bindings.
        domains = max(2, round((target / 200) ** 0.5))
        families = max(1, round(target / 20 / domains))
        people = max(10, target // 5)
        directory = scratch / f"policy-{target}"
        counts = generate(directory, source, domains=domains, people=people, families=families)
        echo(f"authorization: {counts['lines']:,} lines ...")
        started = time.perf_counter()
        policy = PolicySet.load(directory)
        load = time.perf_counter() - started
        tracemalloc.start()
        PolicySet.load(directory)
        memory = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
        rng = random.Random(36)  # noqa: S311 (benchmark requests)
        subjects = sorted(policy.compiled.bindings)
        names = [f"d{index:02d}-tax" for index in range(domains)]
        requests = [
            (
                rng.choice(subjects),
                rng.choice(names),
                f"model/f{rng.randrange(families):03d}",
                rng.choice(("read", "query", "train", "promote")),
            )
            for _ in range(20000)
        ]
        timings = []
        allowed = 0
        for request in requests:
            started = time.perf_counter_ns()
            allowed += policy.decide(*request).allowed
            timings.append((time.perf_counter_ns() - started) / 1000)
        timings.sort()
        rows.append(
            {
                "lines": counts["lines"],
                "load": load,
                "memory_mib": memory,
                "p50_us": statistics.median(timings),
                "p99_us": timings[int(len(timings) * 0.99)],
                "allowed": allowed / len(requests),
            }
        )
        del policy
    return rows


def gateway_growth(
    counts: tuple[int, ...], postgres_url: str | None, scratch: Path, echo
) -> list[dict[str, Any]]:
    """Model queries through the gateway (PostgreSQL, as `govern serve` runs it) with 1, 10,
    100 ... versions in production, each query naming the next model in turn: one client
    alone, then 32 clients paced at a rate both sides keep up with."""
    import secrets as secret_tokens

    from benchmarks.gateway import FAMILY, body, policies, prepare
    from benchmarks.requests import postgres_database, run_load, serve
    from benchmarks.served import serve_version
    from governance.db import Database
    from governance.runtime import version_signer
    from governance.storage import LocalBlobStore

    home = scratch / "gateway-home"
    url = postgres_database(postgres_url) if postgres_url else None
    config, token, _uid = prepare(home, url)
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    store = LocalBlobStore(Path(config["GOVERNANCE_HOME"]) / "blobs")
    signer = version_signer(config)
    models = [FAMILY]
    key = secret_tokens.token_urlsafe(24)
    upstream, upstream_port = serve(
        f"governance.gateway.serving_engine:create_engine_app(api_key={key!r}, echo=True)",
        config,
        1,
        32,
    )
    rows = []
    try:
        process, port = serve(
            "governance.app:create_app()",
            config,
            4,
            8,
            {
                "SERVING_URL": f"http://127.0.0.1:{upstream_port}",
                "SERVING_API_KEY": key,
                "GATEWAY_RATE_PER_MINUTE": "100000000",
                "GOVERNANCE_POLICY_DIR": str(policies(scratch / "gateway-policies", False)),
            },
        )
        try:
            for count in counts:
                while len(models) < count:
                    name = f"{FAMILY}-{len(models):03d}"
                    serve_version(
                        db, store, name, "consumer-tax", "tiny-base", home / "base",
                        home / "adapter", signer,
                    )  # fmt: skip
                    models.append(name)
                served = models[:count]
                echo(f"gateway: {count} served version(s) ...")
                # Each model once first: the gateway registers its adapter with the engine.
                run_load(port, token, 1, 0.5 + count * 0.05, "/v1/chat/completions",
                         body(FAMILY), models=served)  # fmt: skip
                alone = run_load(
                    port, token, 1, 8, "/v1/chat/completions", body(FAMILY), models=served
                )
                paced = run_load(
                    port, token, 32, 8, "/v1/chat/completions", body(FAMILY), rate=100,
                    models=served,
                )  # fmt: skip
                rows.append({"versions": count, "alone": alone, "paced": paced})
        finally:
            process.terminate()
            process.wait(timeout=60)
    finally:
        upstream.terminate()
        upstream.wait(timeout=60)
        db.dispose()
    return rows


def audit_storage(postgres_url: str | None, entries: int, scratch: Path) -> dict[str, float]:
    """Bytes a log entry takes in each database (table and indexes), from `entries` entries
    appended as the benchmark's fill does."""
    from benchmarks.audit_log import fill_log
    from benchmarks.requests import postgres_database
    from governance.config import load_config
    from governance.db import Database
    from governance.instance import init_instance

    sizes = {}
    home = scratch / "storage-sqlite"
    config = load_config({"GOVERNANCE_HOME": str(home)})
    init_instance(config)
    database = home / "governance.db"
    before = database.stat().st_size
    fill_log(config["GOVERNANCE_DATABASE_URL"], entries)
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sizes["SQLite"] = (database.stat().st_size - before) / entries
    if postgres_url:
        url = postgres_database(postgres_url)
        config = load_config({"GOVERNANCE_HOME": str(scratch / "storage-pg"),
                              "GOVERNANCE_DATABASE_URL": url})  # fmt: skip
        init_instance(config)
        db = Database(config["GOVERNANCE_DATABASE_URL"])
        query = "SELECT pg_total_relation_size('audit_entries')"
        with db.engine.connect() as connection:
            before = connection.exec_driver_sql(query).scalar()
        fill_log(config["GOVERNANCE_DATABASE_URL"], entries)
        with db.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE audit_entries")
            after = connection.exec_driver_sql(query).scalar()
        db.dispose()
        sizes["PostgreSQL"] = (after - before) / entries
    return sizes


def _growth(values: list[tuple[float, float]]) -> str:
    """How cost per unit changed from the smallest size to the largest."""
    if len(values) < 2:
        return "one size only"
    (small_n, small_cost), (large_n, large_cost) = values[0], values[-1]
    ratio = (large_cost / large_n) / (small_cost / small_n)
    if 0.8 <= ratio <= 1.25:
        return f"linear (cost per unit x{ratio:.2f} from the smallest to the largest)"
    return f"not linear: cost per unit x{ratio:.2f} from the smallest to the largest"


def run_growth_bench(
    records: tuple[int, ...],
    runners: tuple[int, ...],
    shard_bytes: int,
    entries: tuple[int, ...],
    lines: tuple[int, ...],
    source: str,
    versions: tuple[int, ...] = (),
    postgres_url: str | None = None,
    chart_path: Path | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        scans = scan_growth(records, runners, shard_bytes, scratch, echo) if records else []
        verified = []
        for count in entries:
            echo(f"audit: fill, export and verify {count:,} entries ...")
            work = scratch / f"audit-{count}"
            work.mkdir()
            verified.append(bench_verify(count, work))
        storage = audit_storage(postgres_url, 100_000, scratch) if entries else {}
        authz = authz_growth(Path(source), lines, scratch, echo) if lines else []
        served = gateway_growth(versions, postgres_url, scratch, echo) if versions else []
    if scans and chart_path is not None:
        chart_path.parent.mkdir(parents=True, exist_ok=True)
        chart_path.write_text(chart(scans) + "\n")
    return report(scans, verified, authz, served, shard_bytes, storage)


def chart(scans: list[dict[str, Any]]) -> str:
    """The scans' speed-up by job runners, one line per version size, as SVG (the console's
    own chart code: titled, every point labelled)."""
    from governance.console.charts import line_chart

    runners = [str(scan["runners"]) for scan in scans[0]["scans"]]
    series: dict[str, list[float | None]] = {
        f"{row['records']:,} records": [
            round(row["scans"][0]["seconds"] / scan["seconds"], 2) for scan in row["scans"]
        ]
        for row in scans
    }
    cores = os.cpu_count() or 1
    series[f"ideal on {cores} cores"] = [float(min(int(r), cores)) for r in runners]
    title = "Scan speed-up by job runner processes (x axis: runners)"
    return str(line_chart(title, runners, series, from_zero=True))


def report(scans, verified, authz, served, shard_bytes: int, storage=None) -> str:
    out = [
        "## Growth: how cost grows with the work",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on: {machine()}. "
        "Rerun with `govern bench --only growth` (sizes are options; see `govern bench --help`).",
        "",
    ]
    if scans:
        out += [
            "### Scans by records and by job runner processes",
            "",
            "A SQLite instance on local disk. Each version is unique Faker tax questions "
            f"(about 100 bytes a record), uploaded in shards of {shard_bytes // 1024} KiB; each "
            "scan is a `scan` job taken by warm `govern jobs run` processes (the scanner loaded "
            "before the clock starts), from an empty findings cache. Seconds: from submitting "
            "the job until its receipt committed. CPU: the runners' user + system seconds "
            "during the scan. Peak: the largest runner's resident high-water mark (the model "
            "included).",
            "",
            "| records | MB | shards | runners | seconds | speed-up | CPU s | CPU s per MB "
            "| runner peak | runners used | same receipt |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in scans:
            base = row["scans"][0]
            for scan in row["scans"]:
                out.append(
                    f"| {row['records']:,} | {row['mb']:.1f} | {scan['shards']} | "
                    f"{scan['runners']} | {scan['seconds']:.1f} | "
                    f"{base['seconds'] / scan['seconds']:.2f}x | {scan['cpu']:.1f} | "
                    f"{scan['cpu'] / row['mb']:.1f} | {scan['peak_mib']:.0f} MiB | "
                    f"{scan['by_worker']} | "
                    f"{'yes' if scan['digest'] == base['digest'] else 'NO'} |"
                )
        first = [(r["records"], r["scans"][0]["seconds"]) for r in scans]
        cpu = [(r["mb"], r["scans"][0]["cpu"]) for r in scans]
        out += [
            "",
            f"Scan time with one runner: {_growth(first)}. CPU per MB: {_growth(cpu)}.",
            "",
            "### Upload and the training bundle",
            "",
            "Upload: one process streams the JSONL in, cuts shards, encrypts. Bundle: "
            "`write_bundle` over the version's records read shard by shard twice (the split, "
            "then the members; the same reader as a sanitized view's, which for these synthetic "
            "records the scan mostly holds for review), spooled to files and gzipped; peak is "
            "that fresh process's.",
            "",
            "| records | MB | upload s | upload MB/s | upload peak | bundle s | bundle MB/s "
            "| bundle peak | bundle MiB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in scans:
            up, bundle = row["upload"], row["bundle"]
            out.append(
                f"| {row['records']:,} | {row['mb']:.1f} | {up['seconds']:.1f} | "
                f"{row['mb'] / up['seconds']:.1f} | {up['peak_kib'] / 1024:.0f} MiB | "
                f"{bundle['seconds']:.1f} | {row['mb'] / bundle['seconds']:.1f} | "
                f"{bundle['peak_kib'] / 1024:.0f} MiB | {bundle['bytes'] / MB:.2f} |"
            )
        ups = [(r["mb"], r["upload"]["seconds"]) for r in scans]
        bundles = [(r["mb"], r["bundle"]["seconds"]) for r in scans]
        out += ["", f"Upload: {_growth(ups)}. Bundle: {_growth(bundles)}.", ""]
    if verified:
        out += [
            "### Audit verification by entries",
            "",
            "A SQLite log filled in large transactions, exported whole as a bundle, verified by "
            "`python -m audit verify` in a fresh process on one core (`taskset -c 0`).",
            "",
            "| entries | export s | bundle MiB | verify s | entries/s | verify peak |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in verified:
            out.append(
                f"| {row['entries']:,} | {row['export_seconds']} | {row['bundle_mib']} | "
                f"{row['verify_seconds']} | {row['verify_per_second']:,} | "
                f"{row['verify_peak_mib']} MiB |"
            )
        pairs = [(r["entries"], r["verify_seconds"]) for r in verified]
        out += [
            "",
            f"Verification: {_growth(pairs)} (seconds include the interpreter's start-up, "
            "about 0.1 s, which weighs on the smallest size).",
            "",
        ]
        if storage:
            out += [
                "Storage per entry (table and indexes, 100,000 entries appended): "
                + ", ".join(f"{name} {size:,.0f} bytes" for name, size in storage.items())
                + ".",
                "",
            ]
    if authz:
        out += [
            "### Authorization by lines of policy",
            "",
            "Policies from `benchmarks/policy_generator.py`, a fifth rules and the rest "
            "bindings; 20,000 decisions of random people on random families.",
            "",
            "| lines | load s | peak allocated | decision p50 | decision p99 | allowed |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in authz:
            out.append(
                f"| {row['lines']:,} | {row['load']:.2f} | {row['memory_mib']:.0f} MiB | "
                f"{row['p50_us']:.1f} µs | {row['p99_us']:.1f} µs | {row['allowed']:.1%} |"
            )
        loads = [(r["lines"], r["load"]) for r in authz]
        out += [
            "",
            f"Load: {_growth(loads)}. A decision does not grow with the policy: it looks up "
            "the subject's bindings and the role's rules in hash indexes.",
            "",
        ]
    if served:
        out += [
            "### The gateway by versions in production",
            "",
            "`POST /v1/chat/completions` through the gateway (gunicorn, 4 workers x 8 threads, "
            "PostgreSQL, guardrails off) in front of `govern engine --echo`, which answers at "
            "once; each request names the next served version in turn, so every adapter is "
            "routed, authorized and audited. One client alone for 8 s, then 32 clients paced "
            "at 100 req/s for 8 s.",
            "",
            "| versions served | 1 client req/s | 1 client p50 | 1 client p99 | paced p50 "
            "| paced p99 | errors |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in served:
            alone, paced = row["alone"], row["paced"]
            out.append(
                f"| {row['versions']} | {alone['per_second']} | {alone['p50_ms']} ms | "
                f"{alone['p99_ms']} ms | {paced['p50_ms']} ms | {paced['p99_ms']} ms | "
                f"{alone['errors'] + paced['errors']} |"
            )
        first, last = served[0], served[-1]
        ratio = last["alone"]["p50_ms"] / first["alone"]["p50_ms"]
        out += [
            "",
            f"A query alone with {last['versions']} versions served takes x{ratio:.2f} the "
            f"time it takes with {first['versions']} (p50): "
            + (
                "it does not grow with the versions served (routing is a lookup by name)."
                if ratio < 1.25
                else "it grows with the versions served."
            ),
            "",
        ]
    return "\n".join(out)
