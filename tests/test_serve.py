"""`govern serve` as deployed: real processes on loopback, two instances on one host.

Each instance's engine and guard take free loopback ports of their own, and the web workers
take traffic only once both answer; metrics are summed over the web workers and parse as
Prometheus text; a port set by hand that another process holds is refused at once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.test_cli import GOVERN, govern


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_healthy(server: subprocess.Popen, base: str, log: Path, seconds: float) -> None:
    """Until the server's health check answers 200; fail with its log if it exits first or
    the time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, log.read_text()
        with contextlib.suppress(OSError):
            if get(base + "/api/v1/health")[0] == 200:
                return
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


@contextlib.contextmanager
def served(env: dict, log: Path, workers: int = 1) -> Iterator[str]:
    """`govern serve` with no job runners; yields its base URL once its health answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*GOVERN, "serve", "--port", str(port), "--workers", str(workers), "--runners", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_healthy(server, base, log, 300)
            yield base
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


def served_count(exposition: bytes, route: str) -> float:
    """Requests to a route in Prometheus text, as prometheus_client's parser reads it."""
    families = {f.name: f for f in text_string_to_metric_families(exposition.decode())}
    return sum(
        sample.value
        for sample in families["http_server_request_duration_seconds"].samples
        if sample.name.endswith("_count") and sample.labels["http_route"] == route
    )


def ready_urls(log: Path) -> dict[str, str]:
    """The child URLs `govern serve` said were ready: {"engine": url, "guardrails": url}."""
    found = {}
    for line in log.read_text().splitlines():
        if line.startswith("govern serve: the ") and " is ready on " in line:
            name, _, url = line.removeprefix("govern serve: the ").partition(" is ready on ")
            found[name] = url.strip()
    return found


def test_two_instances_side_by_side_use_their_own_children_and_report_metrics(env, tmp_path):
    other = {**env, "GOVERNANCE_HOME": str(tmp_path / "other")}
    other.pop("GOVERNANCE_DATABASE_URL", None)  # its own SQLite database
    for instance in (env, other):
        for variable in ("SERVING_PORT", "GUARDRAILS_PORT", "SERVING_URL", "GUARDRAILS_URL"):
            instance.pop(variable, None)
        govern(instance, "init", check=True)
    token = govern(env, "token", "create", "admin", check=True).stdout.strip()
    logs = tmp_path / "first.log", tmp_path / "second.log"
    with served(env, logs[0], workers=2) as first, served(other, logs[1]) as second:
        for base in (first, second):
            status, body = get(base + "/api/v1/health")
            health = json.loads(body)
            # Ready before the first request: both children answer, on loopback.
            assert (status, health["engine"], health["guardrails"]) == (200, "ok", "ok"), health
        # Requests spread over both web workers; the metrics sum them.
        for _ in range(12):
            assert get(first + "/api/v1/me", token)[0] == 200
        status, text = get(first + "/api/v1/metrics", token)
        assert status == 200, text
        assert served_count(text, "/api/v1/me") == 12
    urls = [ready_urls(log) for log in logs]
    assert set(urls[0]) == set(urls[1]) == {"engine", "guardrails"}, urls
    # No child of one instance is the other's.
    assert not set(urls[0].values()) & set(urls[1].values()), urls


def test_a_port_set_by_hand_that_is_taken_is_refused_naming_it(env):
    govern(env, "init", check=True)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [*GOVERN, "serve", "--port", str(free_port()), "--runners", "0"],
            env={**env, "GUARDRAILS_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode != 0
    assert f"GUARDRAILS_PORT={port}" in result.stderr, result.stderr


def test_plain_gunicorn_as_the_readme_deploys_it_sums_every_workers_metrics(env, tmp_path):
    govern(env, "init", check=True)
    token = govern(env, "token", "create", "admin", check=True).stdout.strip()
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "-c",
                "python:governance.gunicorn_conf",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "governance.app:create_app()",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, base, log, 120)
        for _ in range(10):
            assert get(base + "/api/v1/me", token)[0] == 200
        status, text = get(base + "/api/v1/metrics", token)
        assert status == 200, text
        assert served_count(text, "/api/v1/me") == 10
        # Multiprocess mode: the workers wrote their values to files that the scrape summed
        # (without it each worker keeps its own counts in memory and writes none).
        metrics = Path(env["GOVERNANCE_HOME"]) / "run" / "metrics"
        assert list(metrics.glob("*.db")), "no worker wrote multiprocess metrics"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
