"""What a request costs: `govern serve`'s app against a bare Flask app, side by side in one run.

Both run under the same gunicorn settings (gthread workers), on the same database, and answer
the same authorized GET (`/api/v1/domains/consumer-tax`: one row, as JSON). The governance app
adds authentication (a token lookup), the policy decision and a durable audit entry (group
commit) to every request; the difference of the two is that cost. Clients are threads with
keep-alive connections in a separate process, each sending requests back to back.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.audit_log import machine
from governance.accounts import service as accounts
from governance.accounts.models import PrincipalKind
from governance.audit.service import Actor
from governance.config import load_config
from governance.db import Database, utcnow
from governance.domains import service as domains
from governance.domains.models import DomainCreate
from governance.gateway.serving_engine import free_port
from governance.instance import init_instance

PATH = "/api/v1/domains/consumer-tax"
BENCH_DATABASE = "governance_bench"


def postgres_database(url: str) -> str:
    """A database of its own for the benchmark (the tests use `test`): created, or emptied."""
    admin = url.replace("postgresql+psycopg://", "postgresql://")
    base, _, _name = admin.rpartition("/")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    return f"{base}/{BENCH_DATABASE}"


def prepare(
    home: Path,
    database_url: str | None,
    principal_name: str = "casey",
    kind: PrincipalKind = PrincipalKind.USER,
) -> tuple[dict[str, Any], str]:
    """An instance with the consumer-tax domain and a token of a principal of it (casey, a
    data steward there in the example policy, who may read it)."""
    overrides = {"GOVERNANCE_HOME": str(home), "AUDIT_CHECKPOINT_SECONDS": 0}
    if database_url:
        overrides["GOVERNANCE_DATABASE_URL"] = database_url
    config = load_config(overrides)
    init_instance(config)
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    actor = Actor("bench")
    with db.unit_of_work() as session:
        domains.create_domain(
            session,
            DomainCreate(name="consumer-tax", jurisdiction="US", retention_days=2555),
            actor=actor,
        )
        accounts.ensure_principal(session, principal_name, kind, actor=actor)
        principal = accounts.get_principal(session, principal_name)
        _record, token = accounts.issue_token(
            session, principal, expires_at=utcnow() + dt.timedelta(hours=2), actor=actor
        )
    db.dispose()
    return config, token


def serve(
    spec: str,
    config: dict[str, Any],
    workers: int,
    threads: int,
    extra_env: dict[str, str] | None = None,
):
    """Start gunicorn on a free port with these settings; wait until it answers."""
    port = free_port()
    env = {
        **os.environ,
        "GOVERNANCE_HOME": config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": config["GOVERNANCE_DATABASE_URL"],
        "AUDIT_CHECKPOINT_SECONDS": "0",
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            spec,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/api/v1/health", timeout=5).close()  # noqa: S310
            break
        except urllib.error.HTTPError:
            break  # The bare app has no health route: it answers, so it is up.
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn did not start: {process.stderr.read()[-800:]}"
                ) from None
            time.sleep(0.2)
    return process, port


def load(
    port: int,
    token: str,
    clients: int,
    seconds: float,
    warmup: float,
    path: str = PATH,
    body: dict | None = None,
    rate: float = 0.0,
    models: list[str] | None = None,
) -> dict[str, Any]:
    """`clients` threads send the request (a GET, or a POST of `body`) back to back for
    `seconds` after `warmup`; or, with `rate`, paced: `rate` requests a second in all, each
    client on a fixed schedule, a request's latency counted from the moment it was due (a
    late answer delays the next request, and that delay is counted, as wrk2 does), so the
    figures are those of a service under that load, not of one kept saturated."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    sent = [0] * clients
    errors = [0]
    kinds: dict[str, int] = {}
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    headers = {"Authorization": f"Bearer {token}"}
    method, payloads = "GET", [None]
    if body is not None:
        # With `models`, each client cycles through them, one model per request.
        method = "POST"
        payloads = [json.dumps({**body, "model": m}).encode() for m in models or [body["model"]]]
        headers["Content-Type"] = "application/json"

    every = clients / rate if rate else 0.0

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = latencies[index]
        due = start + every * index / clients
        while True:
            if every:
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                began, due = due, due + every
            else:
                began = time.monotonic()
            if began >= stop_at:
                break
            try:
                payload = payloads[(index + sent[index]) % len(payloads)]
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                ok = response.status == 200
                kind = f"HTTP {response.status} {answer[:80]!r}"
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                ok = False
                kind = type(exc).__name__
            ended = time.monotonic()
            sent[index] += 1
            if began >= measure_from:
                if ok:
                    mine.append(ended - began)
                else:
                    errors[0] += 1
                    kinds[kind] = kinds.get(kind, 0) + 1
        connection.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    values = sorted(v for mine in latencies for v in mine)

    def pct(q: float) -> float:
        if not values:  # nothing answered in time: no latency to report
            return float("nan")
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)

    return {
        "requests": len(values),
        "sent": sum(sent),
        "errors": errors[0],
        "error_kinds": kinds,
        "per_second": round(len(values) / seconds),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
    }


LOAD_SCRIPT = "benchmarks.requests"


def run_load(
    port: int,
    token: str,
    clients: int,
    seconds: float,
    path: str = PATH,
    body=None,
    rate: float = 0.0,
    models: list[str] | None = None,
) -> dict[str, Any]:
    """The load, in its own process so the clients do not share this one's GIL."""
    spec = {"path": path, "body": body, "rate": rate, "models": models}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            LOAD_SCRIPT,
            "load",
            str(port),
            token,
            str(clients),
            str(seconds),
            "3",
            json.dumps(spec),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    spec: str,
    config,
    token,
    workers: int,
    threads: int,
    clients: int,
    seconds: float,
    rate: float = 0.0,
) -> dict[str, Any]:
    process, port = serve(spec, config, workers, threads)
    try:
        app_before, db_before = tree_cpu(process.pid), database_cpu(config)
        result = run_load(port, token, clients, seconds, rate=rate)
        app_cpu, db_cpu = tree_cpu(process.pid) - app_before, database_cpu(config) - db_before
        # Server CPU per request over the whole run (warm-up included, as its requests are).
        result["cpu_ms"] = round(app_cpu / max(result["sent"], 1) * 1000, 3)
        result["db_cpu_ms"] = round(db_cpu / max(result["sent"], 1) * 1000, 3)
        return result
    finally:
        process.terminate()
        process.wait(timeout=60)


def tree_cpu(pid: int) -> float:
    """User and system CPU seconds of a process and its children (gunicorn's master and
    workers, every thread)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def database_cpu(config: dict[str, Any]) -> float:
    """CPU seconds of the PostgreSQL server's processes (0 on SQLite, which runs inside the
    app's own processes)."""
    import psutil

    if not str(config["GOVERNANCE_DATABASE_URL"]).startswith("postgresql"):
        return 0.0
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            try:
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += times.user + times.system
    return total


ROUNDS = 7


def cpu_breakdown(config: dict[str, Any], token: str, count: int = 2800) -> dict[str, float]:
    """Where an authorized GET spends its CPU (ms per request, all threads of the process,
    the audit writer included), measured in this process with Flask's test client."""
    from benchmarks.bare_app import create_app as create_bare
    from governance import runtime
    from governance.app import create_app
    from governance.audit.service import AuditEvent

    headers = {"Authorization": f"Bearer {token}"}

    saved = os.environ.get("GOVERNANCE_DATABASE_URL")
    os.environ["GOVERNANCE_DATABASE_URL"] = config["GOVERNANCE_DATABASE_URL"]
    try:
        bare_app = create_bare()
    finally:
        if saved is None:
            os.environ.pop("GOVERNANCE_DATABASE_URL")
        else:
            os.environ["GOVERNANCE_DATABASE_URL"] = saved
    app = create_app(config)
    clients = {"bare": bare_app.test_client(), "governance": app.test_client()}
    for client in clients.values():
        for _ in range(100):
            client.get(PATH, headers=headers)
    # Rounds of each app in turn, the median round kept: this machine's speed drifts over a
    # run (other tenants), and interleaving makes both apps meet the same drift.
    rounds: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(ROUNDS):
        for name, client in clients.items():
            started = time.process_time()
            for _ in range(count // ROUNDS):
                assert client.get(PATH, headers=headers).status_code == 200
            rounds[name].append((time.process_time() - started) / (count // ROUNDS) * 1000)
    out = {name: statistics.median(times) for name, times in rounds.items()}
    out["added"] = statistics.median(
        [ours - bare for bare, ours in zip(rounds["bare"], rounds["governance"], strict=True)]
    )
    rt = runtime.of(app)
    with rt.database.unit_of_work() as session:
        started = time.process_time()
        for _ in range(count):
            accounts.authenticate(session, token)
        out["authenticate"] = (time.process_time() - started) / count * 1000
    started = time.process_time()
    for _ in range(count):
        rt.authorizer.decide("casey", "consumer-tax", "domain", "read")
    out["decide"] = (time.process_time() - started) / count * 1000
    event = AuditEvent("casey", "read", "domain", "consumer-tax", "allow", "ab" * 32, None, {})
    started = time.process_time()
    for _ in range(count // 4):
        rt.audit_log.append(event)
    out["audit_append_1"] = (time.process_time() - started) / (count // 4) * 1000

    def appends() -> None:
        for _ in range(count // 32):
            rt.audit_log.append(event)

    threads = [threading.Thread(target=appends) for _ in range(32)]
    started = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["audit_append_32"] = (time.process_time() - started) / (count // 32 * 32) * 1000
    rt.close()
    return {k: round(v, 3) for k, v in out.items()}


def added(bare: dict[str, Any], ours: dict[str, Any]) -> str:
    return (
        f"adds {ours['p50_ms'] - bare['p50_ms']:.2f} ms at p50 and "
        f"{ours['p99_ms'] - bare['p99_ms']:.2f} ms at p99, and "
        f"{ours['cpu_ms'] - bare['cpu_ms']:.3f} ms of its own CPU per request "
        f"({ours['db_cpu_ms'] - bare['db_cpu_ms']:+.3f} ms of the database's)"
    )


def compared(rows, sentence, sent: dict[str, int] | None = None) -> list[str]:
    """Table rows for (database, app, result), then one sentence per database comparing its
    two apps. Paced rows (`sent`: the rate per database) show what was sent first."""
    lines = []
    for label, name, r in rows:
        counts = (sent[label], r["requests"]) if sent else (r["requests"], r["per_second"])
        lines.append(
            f"| {label} | {name} | {counts[0]} | {counts[1]} | {r['p50_ms']} | "
            f"{r['p90_ms']} | {r['p99_ms']} | {r['cpu_ms']} | {r['db_cpu_ms']} | {r['errors']} |"
        )
    lines.append("")
    for label in dict.fromkeys(label for label, _n, _r in rows):
        bare, ours = (r for lab, _n, r in rows if lab == label)
        lines.append(sentence(label, bare, ours))
    return lines


APPS = (
    ("bare Flask app", "benchmarks.bare_app:create_app()"),
    ("governance (authn + policy + audit)", "governance.app:create_app()"),
)


def run_requests_bench(
    postgres_url: str | None,
    workers: int = 4,
    threads: int = 8,
    clients: int = 32,
    seconds: float = 15.0,
    echo=print,
) -> str:
    rows: list[tuple[str, str, dict[str, Any]]] = []
    paced: list[tuple[str, str, dict[str, Any]]] = []
    rates: dict[str, int] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="governance-requests-") as scratch:
        databases = [("SQLite", None)]
        if postgres_url:
            databases.insert(0, ("PostgreSQL", postgres_database(postgres_url)))
        for label, url in databases:
            home = Path(scratch) / label.lower()
            config, token = prepare(home, url)
            if label == "PostgreSQL":
                echo("measuring where a request spends its CPU ...")
                cpu = cpu_breakdown(config, token)
            closed = []
            for name, spec in APPS:
                echo(f"{label}: {clients} clients against {name} for {seconds:.0f} s ...")
                result = measure(spec, config, token, workers, threads, clients, seconds)
                closed.append(result)
                rows.append((label, name, result))
            # Then both at the same steady load, half of what the slower one sustained.
            rate = max(1, round(min(r["per_second"] for r in closed) / 2))
            rates[label] = rate
            for name, spec in APPS:
                echo(f"{label}: {clients} clients at {rate} req/s against {name} ...")
                result = measure(spec, config, token, workers, threads, clients, seconds, rate)
                paced.append((label, name, result))
    lines = [
        "## Request cost",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on: {machine()}.",
        "",
        f"`GET {PATH}` (one row as JSON), {clients} concurrent keep-alive clients sending "
        f"back to back for {seconds:.0f} s after a 3 s warm-up, clients in their own process "
        f"on the same machine. Both apps under gunicorn with the same settings: "
        f"`--worker-class gthread --workers {workers} --threads {threads}`. The governance "
        "app authenticates the bearer token, asks the policy and writes a durable audit "
        "entry (group commit) for every request; the bare app only reads the row.",
        "",
        "| database | app | requests | req/s | p50 ms | p90 ms | p99 ms | app CPU ms/req "
        "| database CPU ms/req | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += compared(
        rows,
        lambda label, bare, ours: (
            f"{label}: the governance app {added(bare, ours)}, and serves "
            f"{ours['per_second'] / bare['per_second']:.0%} of the bare app's throughput."
        ),
    )
    lines += [
        "",
        f"The same {clients} clients paced (open loop, as wrk2 does): together they send a "
        "fixed number of requests a second, half of what the slower app sustained above, to "
        "both apps; a request's latency counts from the moment it was due, so a late answer "
        "that delays the next request is counted. This is the cost of a request at a load "
        "the service keeps up with, rather than the queue of a saturated one.",
        "",
        "| database | app | req/s sent | requests | p50 ms | p90 ms | p99 ms | app CPU ms/req "
        "| database CPU ms/req | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += compared(
        paced,
        lambda label, bare, ours: (
            f"{label}, {rates[label]} req/s: the governance app {added(bare, ours)}."
        ),
        rates,
    )
    if cpu:
        lines += [
            "",
            "Where the time goes (PostgreSQL, one client in one process, CPU of all its "
            "threads per request): the bare app "
            f"{cpu['bare']} ms, the governance app {cpu['governance']} ms, "
            f"{cpu['added']} ms added (medians of {ROUNDS} rounds that alternate between "
            "the two apps in one process, so both meet the same machine). Of the "
            f"difference: authentication {cpu['authenticate']} ms (one indexed query that "
            f"reads the token and its principal together), the policy decision "
            f"{cpu['decide']} ms (the compiled policy), a durable audit append "
            f"{cpu['audit_append_1']} ms alone (a transaction of its own) but "
            f"{cpu['audit_append_32']} ms when 32 callers share group commits; the rest is "
            "the request guard and flask-openapi3's validation. Under 32 clients on 2 cores "
            "every request queues behind that CPU (and the database's), so the added "
            "latency at saturation is queueing, not work.",
        ]
    lines += [
        "",
        "CPU per request is the app's processes' user and system time (gunicorn's master and "
        "workers, every thread, the audit writer's included) and the PostgreSQL server's "
        "processes', over the run, divided by the requests sent: a measure of work that does "
        "not depend on how many cores the machine has, unlike latency at saturation.",
        "",
        "Targets (PostgreSQL): at most 5 ms added at p99, at least half the bare app's "
        "throughput, and at most 1 ms of added app CPU per authorized read. On a 2-core "
        "machine the clients, gunicorn and the database share the cores, so absolute figures "
        "are lower than on a server; the comparison is the point.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        port, token, clients, seconds, warmup = sys.argv[2:7]
        request = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}
        print(
            json.dumps(
                load(
                    int(port),
                    token,
                    int(clients),
                    float(seconds),
                    float(warmup),
                    request.get("path") or PATH,
                    request.get("body"),
                    float(request.get("rate") or 0),
                    request.get("models"),
                )
            )
        )
