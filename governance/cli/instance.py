"""Setting an instance up and serving it: `govern init`, `govern serve`."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from governance.cli.base import fail_cleanly, instance_session, instance_storage, settings

if TYPE_CHECKING:
    pass


@click.command()
@fail_cleanly
def init() -> None:
    """Create the instance: directory, keys, database schema and the admin principal."""
    from governance.instance import init_instance

    report = init_instance(settings())
    if report.created:
        click.echo(f"initialized {report.home}: created {', '.join(report.created)}")
    else:
        click.echo(f"{report.home} is already initialized; nothing changed")
    click.echo(f"database: {report.database_url}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Per worker."
)
@click.option(
    "--runners",
    default=1,
    show_default=True,
    type=click.IntRange(0, 64),
    help="Job runners (scans, evaluations) started beside the web workers; 0 if they run "
    "elsewhere.",
)
@fail_cleanly
def serve(host: str, port: int, workers: int, threads: int, runners: int) -> None:
    """Serve the API with gunicorn, and job runners beside it.

    Web workers never load the PII scanner or torch: scans and evaluations run in the job
    runners (`govern jobs run`). For more gunicorn options run
    `gunicorn -k gthread 'governance.app:create_app()'` and start runners yourself.
    """
    from gunicorn.app.base import BaseApplication

    from governance import runtime
    from governance.app import create_app
    from governance.datasets.service import sweep

    _keyring, store = instance_storage()
    with instance_session() as session:
        settled = sweep(session, store)
    if any(settled.values()):
        click.echo(f"settled blobs left by interrupted uploads: {settled}", err=True)
    config = settings()
    overrides: dict[str, Any] = {}
    children = []
    # The embedded serving engine and guard (prompt and answer scans), unless URLs name
    # others: on loopback, each with a key only it and this server know.
    for command, url_key, api_key in (
        ("engine", "SERVING_URL", "SERVING_API_KEY"),
        ("guard", "GUARD_URL", "GUARD_API_KEY"),
    ):
        if config.get(url_key):
            continue
        key = config.get(api_key) or secrets.token_urlsafe(32)
        overrides[api_key] = key
        children.append(Supervised(command, [command], {**os.environ, api_key: key}))
    # Every worker's metrics in one place, summed by GET /api/v1/metrics (emptied at start,
    # as prometheus_client's multiprocess mode asks).
    metrics_dir = Path(config["GOVERNANCE_HOME"]) / "run" / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    app = create_app(overrides)
    children += [
        Supervised(f"job runner {n + 1}", ["jobs", "run"], dict(os.environ)) for n in range(runners)
    ]
    stopping = threading.Event()

    def supervise(_arbiter) -> None:
        """In the master, once it is ready: restart any child that died (kill -9, a crash),
        waiting 1, 2, 4 ... up to 60 seconds between tries of one that keeps dying."""

        def loop() -> None:
            while not stopping.wait(1.0):
                for child in children:
                    child.tend(stopping)

        threading.Thread(target=loop, name="supervisor", daemon=True).start()

    def stop_children(_arbiter) -> None:
        stopping.set()
        for child in children:
            child.process.terminate()
        for child in children:
            try:
                child.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.process.kill()
        os._exit(0)

    def worker_exit(_arbiter, worker) -> None:
        """A worker that served and was told to stop: finish its audit appends, then leave
        without the interpreter's slow teardown of a large heap (most of a second)."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
        if worker.booted and not worker.alive:
            runtime.of(app).audit_log.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            # Threaded workers: a slow request (a large upload) never stops the worker from
            # answering gunicorn's heartbeat, so nothing is killed as a "WORKER TIMEOUT".
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", "-")
            # gunicorn's control socket (a thread in the master) takes a second to stop, and
            # nothing here uses it: without it, SIGTERM stops an idle server at once.
            self.cfg.set("control_socket_disable", True)
            self.cfg.set("worker_exit", worker_exit)
            self.cfg.set("when_ready", supervise)
            self.cfg.set("on_exit", stop_children)

        def load(self):
            return app

    Server().run()


class Supervised:
    """A child of `govern serve` (the engine, the guard, a job runner), restarted when it
    dies, with a backoff that doubles while it keeps dying and resets once it stays up."""

    STEADY_SECONDS = 60.0
    MAX_DELAY = 60.0

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, args, env
        self.failures = 0
        self.restart_at: float | None = None
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        self.started = time.monotonic()
        return subprocess.Popen([sys.executable, "-m", "governance.cli", *self.args], env=self.env)

    def tend(self, stopping: threading.Event) -> None:
        now = time.monotonic()
        code = self.process.poll()
        if code is None:
            if now - self.started > self.STEADY_SECONDS:
                self.failures = 0
            return
        if stopping.is_set():
            return
        if self.restart_at is None:
            delay = min(self.MAX_DELAY, 2.0**self.failures)
            self.failures += 1
            self.restart_at = now + delay
            print(
                f"govern serve: the {self.name} (pid {self.process.pid}) exited with {code}; "
                f"restarting it in {delay:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        elif now >= self.restart_at:
            self.restart_at = None
            self.process = self._start()
            print(
                f"govern serve: the {self.name} restarted (pid {self.process.pid})",
                file=sys.stderr,
                flush=True,
            )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Default: SERVING_PORT.")
@click.option("--keep", default=2, show_default=True, help="Adapters kept loaded in memory.")
@click.option(
    "--echo",
    is_flag=True,
    help="Load no models: answer each prompt with itself (load tests, smoke tests).",
)
@fail_cleanly
def engine(host: str, port: int | None, keep: int, echo: bool) -> None:
    """Run the embedded serving engine (base models + LoRA adapters, OpenAI-compatible API).

    `govern serve` starts one; run it yourself to serve models on another host. The API key
    is SERVING_API_KEY (empty: none, so listen on loopback only).
    """
    from governance.gateway.engine import create_engine_app

    config = settings()
    port = port or int(config["SERVING_PORT"])
    app = create_engine_app(config.get("SERVING_API_KEY") or "", keep=keep, echo=echo)
    serve_until_stopped(app, host, port, "serving engine")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Default: GUARD_PORT.")
@fail_cleanly
def guard(host: str, port: int | None) -> None:
    """Run the guard: PII scans of prompts and answers for the gateway (Presidio's analyzer
    API, with each domain's pii.yaml rules).

    `govern serve` starts one; run it yourself to scan on another host. The API key is
    GUARD_API_KEY (empty: none, so listen on loopback only).
    """
    from governance.gateway.guard_server import create_guard_app

    config = settings()
    port = port or int(config["GUARD_PORT"])
    app = create_guard_app(
        config["GOVERNANCE_POLICY_DIR"], config.get("GUARD_API_KEY") or "", config["PII_MODEL"]
    )
    serve_until_stopped(app, host, port, "guard")


def serve_until_stopped(app, host: str, port: int, name: str) -> None:
    """Serve a small loopback app (the engine, the guard) with threads until SIGTERM."""
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    click.echo(f"{name} on http://{host}:{port}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()
    server.server_close()
