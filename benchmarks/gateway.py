"""What the gateway adds to a model query: `POST /v1/chat/completions` through governance's
gateway against the same request sent straight to the upstream engine, and through LiteLLM's
proxy in front of the same upstream, side by side in one run.

The upstream is `govern engine --echo` under gunicorn: it answers at once (it repeats the
prompt), so what remains is the cost of the layer in front of it. The gateway authenticates
the caller's token, asks the policy, admits the query under its limits, routes it, forwards
it and writes a durable audit entry; the guardrails (prompt and answer scans in the guard
process) are measured as a second configuration. LiteLLM runs from its own virtual
environment (`.bench/litellm`, installed on first use), checking its master key and routing
to the same upstream; it writes no spend logs (no database configured).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.audit_log import machine
from benchmarks.requests import postgres_database, run_load, serve
from benchmarks.requests import prepare as prepare_instance
from benchmarks.served import serve_version, tiny_adapter
from governance.accounts.models import PrincipalKind
from governance.db import Database
from governance.gateway.serving_engine import free_port, loopback_process
from governance.runtime import version_signer
from governance.storage import LocalBlobStore

FAMILY = "tax-helper"
LITELLM = "litellm[proxy]==1.90.7"
ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Which form reports the wages of an employee, and where do they go on Form 1040?"
OFF = "version: 1\ndefault: {prompts: 'off', answers: 'off', required: false}\n"


def body(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
        "temperature": 0,
    }


def prepare(home: Path, database_url: str | None) -> tuple[dict[str, Any], str, str]:
    """An instance with consumer-tax, a served version of FAMILY (a tiny base, an untrained
    adapter) and a token of taxbot (a model-consumer there); return config, token, the
    version's uid."""
    config, token = prepare_instance(home, database_url, "taxbot", PrincipalKind.SERVICE)
    tiny_adapter(home / "base", home / "adapter")
    db = Database(config["GOVERNANCE_DATABASE_URL"])
    version = serve_version(
        db,
        LocalBlobStore(Path(config["GOVERNANCE_HOME"]) / "blobs"),
        FAMILY,
        "consumer-tax",
        "tiny-base",
        home / "base",
        home / "adapter",
        version_signer(config),
    )
    db.dispose()
    return config, token, version.uid


def policies(target: Path, guarded: bool) -> Path:
    shutil.copytree(ROOT / "policies", target)
    if not guarded:
        (target / "guardrails.yaml").write_text(OFF)
    return target


def litellm_bin(echo) -> tuple[Path | None, str]:
    """LiteLLM's proxy from its own virtual environment (installed on first use)."""
    venv = ROOT / ".bench" / "litellm"
    binary = venv / "bin" / "litellm"
    if binary.exists():
        return binary, ""
    echo(f"installing {LITELLM} into {venv} (once) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", LITELLM],
            check=True,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        detail = getattr(exc, "stderr", "") or str(exc)
        return None, f"LiteLLM could not be installed: {detail.strip()[-300:]}"
    return binary, ""


def start_litellm(binary: Path, upstream: str, key: str, uid: str, workers: int, scratch: Path):
    config = scratch / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {FAMILY}\n"
        "    litellm_params:\n"
        f"      model: openai/{uid}\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {key}\n"
        "general_settings:\n"
        "  master_key: sk-bench-master\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "NO_DOCKER": "True",
    }
    process = subprocess.Popen(
        [
            str(binary),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=5).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = process.stderr.read()[-800:] if process.stderr else ""
                raise RuntimeError(f"LiteLLM did not start: {tail}") from None
            time.sleep(0.5)


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def run_gateway_bench(
    postgres_url: str | None,
    workers: int = 4,
    threads: int = 8,
    clients: int = 32,
    seconds: float = 15.0,
    echo=print,
) -> str:
    rows: list[tuple[str, dict[str, Any]]] = []
    notes: list[str] = []
    key = secrets.token_urlsafe(24)

    pace: dict[str, int] = {}

    def measure(name: str, port: int, token: str, model: str, paced: bool = True) -> None:
        # One query first: the gateway registers the adapter with the engine on it. Then one
        # client alone (the cost of a query without queueing), then all of them back to
        # back, then all of them paced at half of what the gateway sustained (the first
        # measured), the same load for every path.
        run_load(port, token, 1, 1, "/v1/chat/completions", body(model))
        echo(f"1 client, then {clients}, for {seconds:.0f} s each: {name} ...")
        alone = run_load(port, token, 1, seconds / 2, "/v1/chat/completions", body(model))
        rows.append((f"{name}, 1 client", alone))
        saturated = run_load(port, token, clients, seconds, "/v1/chat/completions", body(model))
        rows.append((name, saturated))
        if not paced:
            return
        rate = pace.setdefault("rate", max(1, round(saturated["per_second"] / 2)))
        echo(f"{clients} clients at {rate} req/s: {name} ...")
        steady = run_load(
            port, token, clients, seconds, "/v1/chat/completions", body(model), rate=rate
        )
        rows.append((f"{name}{paced_suffix(clients, rate)}", steady))

    with tempfile.TemporaryDirectory(prefix="governance-gateway-") as scratch_dir:
        scratch = Path(scratch_dir)
        url = postgres_database(postgres_url) if postgres_url else None
        database = "PostgreSQL" if url else "SQLite"
        config, token, uid = prepare(scratch / "home", url)
        upstream, upstream_port = serve(
            f"governance.gateway.serving_engine:create_engine_app(api_key={key!r}, echo=True)",
            config,
            1,
            32,
        )
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        common = {
            "SERVING_URL": upstream_url,
            "SERVING_API_KEY": key,
            "GATEWAY_RATE_PER_MINUTE": "100000000",
        }

        def gateway(name: str, guarded: bool, **env: str) -> None:
            policy_dir = policies(scratch / name, guarded)
            process, port = serve(
                "governance.app:create_app()",
                config,
                workers,
                threads,
                {**common, "GOVERNANCE_POLICY_DIR": str(policy_dir), **env},
            )
            try:
                # The guarded gateway sustains a fraction of the plain one's rate: its cost
                # is read from its one-client and saturated rows.
                measure(GATEWAY_ROWS[guarded], port, token, FAMILY, paced=not guarded)
            finally:
                stop(process)

        try:
            gateway("plain", False)
            measure(UPSTREAM, upstream_port, key, uid)
            with loopback_process(
                "guardrails",
                "GUARDRAILS_API_KEY",
                env={"GOVERNANCE_HOME": config["GOVERNANCE_HOME"]},
            ) as (guard_url, guard_key):
                gateway("guarded", True, GUARDRAILS_URL=guard_url, GUARDRAILS_API_KEY=guard_key)
            binary, why = litellm_bin(echo)
            if binary is None:
                notes.append(why)
            else:
                litellm, port = start_litellm(binary, upstream_url, key, uid, workers, scratch)
                try:
                    name = f"LiteLLM proxy {LITELLM.split('==')[1]} (master key, no database)"
                    measure(name, port, "sk-bench-master", FAMILY)
                finally:
                    stop(litellm)
        finally:
            stop(upstream)
    return report(rows, notes, database, workers, threads, clients, seconds, pace.get("rate"))


def paced_suffix(clients: int, rate: int) -> str:
    return f", {clients} clients at {rate} req/s"


UPSTREAM = "upstream alone (govern engine --echo)"
GATEWAY_ROWS = {
    False: "governance gateway (authn, policy, limits, routing, audit)",
    True: "governance gateway + guardrails (prompt and answer scans)",
}


def report(rows, notes, database, workers, threads, clients, seconds, rate=None) -> str:
    lines = [
        "## Gateway cost",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on: {machine()}.",
        "",
        f"`POST /v1/chat/completions` (one user message, `max_tokens` 16), {clients} "
        f"concurrent keep-alive clients sending back to back for {seconds:.0f} s after a 3 s "
        "warm-up, in their own process on the same machine. Upstream: `govern engine --echo` "
        "under gunicorn (one process, 32 threads), which answers at once. Gateway: "
        f"`gunicorn -k gthread --workers {workers} --threads {threads}` on {database}, "
        "as `govern serve` runs it. LiteLLM's proxy: the same number of workers, in front "
        "of the same upstream.",
        "",
        "| path | requests | req/s | p50 ms | p90 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['requests']} | {r['per_second']} | {r['p50_ms']} | {r['p90_ms']} | "
            f"{r['p99_ms']} | {r['errors']} |"
        )
    lines.append("")
    for name, r in rows:
        for kind, count in sorted((r.get("error_kinds") or {}).items()):
            lines.append(f"Errors of {name}: {count} x {kind}.")
    found = dict(rows)
    other = next((r for n, r in rows if n.startswith("LiteLLM") and "1 client" not in n), None)
    loads = [(", 1 client", "one client alone"), ("", f"{clients} clients back to back")]
    if rate:
        loads.append((paced_suffix(clients, rate), f"{clients} clients sending {rate} req/s"))
    for suffix, load in loads:
        alone_base, alone_ours = (
            found.get(UPSTREAM + suffix),
            found.get(GATEWAY_ROWS[False] + suffix),
        )
        if alone_base and alone_ours:
            lines.append(
                f"With {load}, the gateway adds "
                f"{alone_ours['p50_ms'] - alone_base['p50_ms']:.2f} ms at p50 and "
                f"{alone_ours['p99_ms'] - alone_base['p99_ms']:.2f} ms at p99 to the "
                "upstream's own latency (targets: 2 ms and 5 ms at 32 clients)."
            )
        alone_guarded = found.get(GATEWAY_ROWS[True] + suffix)
        if alone_ours and alone_guarded:
            lines.append(
                f"With {load}, the guardrails add "
                f"{alone_guarded['p50_ms'] - alone_ours['p50_ms']:.2f} ms at p50 and "
                f"{alone_guarded['p99_ms'] - alone_ours['p99_ms']:.2f} ms at p99 on top "
                "(a scan of the prompt and one of the answer, in the guard process)."
            )
    ours = found.get(GATEWAY_ROWS[False])
    if ours and other:
        ratio = ours["per_second"] / max(other["per_second"], 1)
        lines.append(
            f"Throughput: the gateway {ours['per_second']} req/s, LiteLLM's proxy "
            f"{other['per_second']} req/s ({ratio:.2f}x)."
        )
    lines += [
        "",
        "On these 2 cores the clients, gunicorn's workers, the upstream, PostgreSQL and (for "
        "the guarded run) the guard share the CPU, so at 32 clients every request queues "
        "behind the others' work: the added latency there is mostly queueing; the one-client "
        "rows show what a query itself costs. The paced rows (open loop, as wrk2 does: the "
        "clients together send a fixed number of requests a second, half of what the gateway "
        "sustained, and a request's latency counts from the moment it was due) show each path "
        "at the same load that the gateway keeps up with.",
    ]
    lines += [f"Note: {n}" for n in notes]
    lines.append("")
    return "\n".join(lines)
