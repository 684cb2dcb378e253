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
from collections.abc import Iterator
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
    `gunicorn -c python:governance.gunicorn_conf 'governance.app:create_app()'` and start the
    runners, the engine and the guardrails yourself.
    """
    config = settings()
    # Every worker's metrics in one place, summed by GET /api/v1/metrics (emptied at start,
    # as prometheus_client's multiprocess mode asks). Set before anything imports
    # prometheus_client: it chooses in-memory or file-backed values when it is imported.
    metrics_dir = Path(config["GOVERNANCE_HOME"]) / "run" / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    import socket

    from gunicorn.app.base import BaseApplication

    from governance import runtime
    from governance.app import create_app
    from governance.datasets.service import sweep

    # The web port is bound first, so no child (which binds a free port) can take it, and a
    # port another process holds is refused at once; gunicorn's workers serve this socket.
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    listener.listen(2048)
    listener.set_inheritable(True)
    _keyring, store = instance_storage()
    with instance_session() as session:
        settled = sweep(session, store)
    if any(settled.values()):
        click.echo(f"settled blobs left by interrupted uploads: {settled}", err=True)
    overrides: dict[str, Any] = {}
    children: list[Supervised] = []
    loopback: list[tuple[Supervised, str, Path]] = []
    # The embedded serving engine and guard (prompt and answer scans), unless URLs name
    # others: on loopback ports they bind themselves (free ones, reported back through a file,
    # unless SERVING_PORT or GUARDRAILS_PORT is set), each with a key only it and this server know,
    # so two instances on one host never answer each other's queries.
    child_env = dict(os.environ)
    run_dir = Path(config["GOVERNANCE_HOME"]) / "run"
    # Every port set by hand is checked (a taken one refused) before any child starts.
    planned = [
        (command, url_key, api_key, child_port(port_key))
        for command, url_key, api_key, port_key in (
            ("engine", "SERVING_URL", "SERVING_API_KEY", "SERVING_PORT"),
            ("guardrails", "GUARDRAILS_URL", "GUARDRAILS_API_KEY", "GUARDRAILS_PORT"),
        )
        if not config.get(url_key)
    ]
    for _command, _url_key, api_key, _port in planned:
        key = config.get(api_key) or secrets.token_urlsafe(32)
        overrides[api_key] = child_env[api_key] = key
    for command, url_key, _api_key, port in planned:
        port_file = run_dir / f"{command}.port"
        port_file.unlink(missing_ok=True)
        args = [command, "--port", str(port), "--port-file", str(port_file)]
        child = Supervised(command, args, dict(child_env))
        children.append(child)
        loopback.append((child, url_key, port_file))
    try:
        for child, url_key, port in wait_until_ready(
            loopback, float(config["SERVE_READY_SECONDS"])
        ):
            overrides[url_key] = child_env[url_key] = f"http://127.0.0.1:{port}"
            # A restart binds the same port, so the web workers' URL stays right.
            child.args = [child.args[0], "--port", str(port)]
    except click.ClickException:
        for child in children:
            child.stop()
        raise
    # Job runners reach the same engine and guard, with their keys.
    os.environ.update({k: v for k, v in child_env.items() if k.endswith("_URL")})
    app = create_app(overrides)
    children += [
        Supervised(f"job runner {n + 1}", ["jobs", "run"], dict(child_env)) for n in range(runners)
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
            child.stop()
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
            self.cfg.set("bind", f"fd://{listener.fileno()}")
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

    try:
        Server().run()
    finally:
        # gunicorn returns (or exits) without its on_exit hook when it cannot start: the
        # children must not outlive the server that started them.
        stopping.set()
        for child in children:
            child.stop()


def child_port(port_key: str) -> int:
    """The loopback port for a child of `govern serve`: SERVING_PORT or GUARDRAILS_PORT when set in
    the environment (refused at once, naming it, when something already listens there), else 0:
    the child binds a free one itself and reports it."""
    import socket

    given = os.environ.get(port_key, "").strip()
    if not given or given == "0":
        return 0
    port = int(given)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise click.ClickException(
                f"{port_key}={port}: another process listens on 127.0.0.1:{port} ({exc.strerror});"
                f" unset {port_key} to take a free port"
            ) from exc
    return port


def wait_until_ready(
    children: list[tuple[Supervised, str, Path]], seconds: float
) -> Iterator[tuple[Supervised, str, int]]:
    """Wait until each child has bound its port (written to its port file) and answers
    `GET /health` with 200 (the guardrails answer 503 while its scanner loads), so the first query
    never meets a child that is not there yet; yield (child, URL setting, port). Fail loudly,
    naming the child, when one exits or the time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    for child, url_key, port_file in children:
        url = None
        while True:
            code = child.process.poll()
            if code is not None:
                raise click.ClickException(
                    f"the {child.name} exited with {code} before it was ready; its output is above"
                )
            if url is None and port_file.exists() and port_file.read_text().strip():
                url = f"http://127.0.0.1:{int(port_file.read_text())}"
            if url is not None:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=2) as answer:  # noqa: S310
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"the {child.name} was not ready within {seconds:.0f} s (SERVE_READY_SECONDS)"
                )
            time.sleep(0.2)
        click.echo(f"govern serve: the {child.name} is ready on {url}", err=True)
        yield child, url_key, int(url.rsplit(":", 1)[1])


class Supervised:
    """A child of `govern serve` (the engine, the guardrails, a job runner), restarted when it
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

    def stop(self) -> None:
        """Terminate the child and wait for it (killing it after 30 seconds)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

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
@click.option(
    "--port", default=None, type=click.IntRange(0, 65535), help="Default: SERVING_PORT; 0: free."
)
@click.option("--keep", default=2, show_default=True, help="Adapters kept loaded in memory.")
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound port here (with --port 0: a free port).",
)
@click.option(
    "--echo",
    is_flag=True,
    help="Load no models: answer each prompt with itself (load tests, smoke tests).",
)
@fail_cleanly
def engine(host: str, port: int | None, keep: int, echo: bool, port_file: Path | None) -> None:
    """Run the embedded serving engine (base models + LoRA adapters, OpenAI-compatible API).

    `govern serve` starts one; run it yourself to serve models on another host. The API key
    is SERVING_API_KEY (empty: none, so listen on loopback only).
    """
    from governance.gateway.serving_engine import create_engine_app

    config = settings()
    port = int(config["SERVING_PORT"]) if port is None else port
    app = create_engine_app(config.get("SERVING_API_KEY") or "", keep=keep, echo=echo)
    serve_until_stopped(app, host, port, "serving engine", port_file)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=None, type=click.IntRange(0, 65535), help="Default: GUARDRAILS_PORT; 0: free."
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound port here (with --port 0: a free port).",
)
@fail_cleanly
def guardrails(host: str, port: int | None, port_file: Path | None) -> None:
    """Run the guardrails: PII scans of prompts and answers for the gateway (Presidio's analyzer
    API, with each domain's pii.yaml rules).

    `govern serve` starts one; run it yourself to scan on another host. The API key is
    GUARDRAILS_API_KEY (empty: none, so listen on loopback only).
    """
    from governance.gateway.guardrails_server import create_guardrails_app

    config = settings()
    port = int(config["GUARDRAILS_PORT"]) if port is None else port
    app = create_guardrails_app(
        config["GOVERNANCE_POLICY_DIR"], config.get("GUARDRAILS_API_KEY") or "", config["PII_MODEL"]
    )
    serve_until_stopped(app, host, port, "guardrails", port_file)


def serve_until_stopped(
    app, host: str, port: int, name: str, port_file: Path | None = None
) -> None:
    """Serve a small loopback app (the engine, the guardrails) with threads until SIGTERM; with a
    port file, write the port bound there once listening (port 0 binds a free one)."""
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    port = server.port
    if port_file is not None:
        partial = port_file.with_name(port_file.name + ".partial")
        partial.write_text(str(port))
        partial.replace(port_file)
    click.echo(f"{name} on http://{host}:{port}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()
    server.server_close()
