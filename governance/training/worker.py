"""`govern worker`: the local executor. Claims jobs over the API and trains in a subprocess.

The worker holds a principal token that may only claim jobs. Per job it receives a
job-scoped token, downloads the bundle (sanitized records and the spec), runs
`python -m trainers.lora` in a child process, sends heartbeats with the trainer's progress
while it runs, and uploads the result. It never sees raw data, keys or database
credentials. Killed at any point, its lease lapses and another worker retries the job.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from governance.client import ApiError, api_call, api_download, api_request

T = TypeVar("T")

log = logging.getLogger(__name__)


def pack(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()


def train_claimed(claim: dict, url: str | None, echo: Callable[[str], None]) -> bool:
    """Train one claimed job; return whether the result was accepted."""
    uid, token = claim["job"], claim["token"]
    period = max(1.0, claim["lease_seconds"] / 3)
    with tempfile.TemporaryDirectory(prefix=f"job-{uid[:8]}-") as scratch:
        root = Path(scratch)
        # Downloaded to a file a chunk at a time, never held whole in memory.
        with (root / "bundle.tar.gz").open("wb") as target:
            api_download(f"/api/v1/jobs/{uid}/bundle", target, url=url, token=token)
        with tarfile.open(root / "bundle.tar.gz", mode="r:gz") as tar:
            tar.extractall(root / "bundle", filter="data")
        (root / "bundle.tar.gz").unlink()
        latest: dict = {}
        done = threading.Event()

        def beat() -> None:
            while not done.wait(period):
                try:
                    api_call(
                        "POST",
                        f"/api/v1/jobs/{uid}/heartbeat",
                        {"progress": latest},
                        url=url,
                        token=token,
                    )
                except ApiError as exc:
                    log.warning("heartbeat for job %s failed: %s", uid, exc.message)

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
        # stderr to a file: read only stdout while it runs, a pipe of stderr that filled
        # (the harness's logs go there) would stop the trainer, and this worker with it.
        errors = root / "trainer.stderr"
        with errors.open("w") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "trainers.lora", str(root / "bundle"), str(root / "out")],
                stdout=subprocess.PIPE,
                stderr=sink,
                text=True,
            )
        for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress":
                latest.clear()
                latest.update(
                    {k: event[k] for k in ("step", "of", "epoch", "loss", "units") if k in event}
                )
                echo(f"job {uid[:8]}: step {event['step']}/{event['of']} loss {event['loss']}")
        code = process.wait()
        stderr = errors.read_text(errors="replace")
        done.set()
        beater.join()
        if code != 0:
            message = (stderr.strip().splitlines() or ["trainer failed"])[-1][:900]
            api_call("POST", f"/api/v1/jobs/{uid}/fail", {"error": message}, url=url, token=token)
            echo(f"job {uid[:8]}: failed: {message}")
            return False
        result = pack(root / "out")
        retrying(
            lambda: api_request(
                "POST",
                f"/api/v1/jobs/{uid}/result",
                result,
                "application/gzip",
                url=url,
                token=token,
            ),
            echo,
            f"job {uid[:8]}: sending the result",
        )
        echo(f"job {uid[:8]}: result accepted ({claim['family']} v{claim['version']})")
        return True


BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
# How long a worker keeps trying to reach a service that is down before giving up.
UNREACHABLE_GIVE_UP = 900.0


def retrying(call: Callable[[], T], echo: Callable[[str], None], what: str) -> T:
    """Run `call`, retrying with exponential backoff (and jitter) while the service cannot be
    reached or answers 5xx, as during a restart; give up after UNREACHABLE_GIVE_UP seconds."""
    delay = BACKOFF_FIRST
    waited = 0.0
    while True:
        try:
            return call()
        except ApiError as exc:
            transient = exc.unreachable or exc.status >= 500
            if not transient or waited >= UNREACHABLE_GIVE_UP:
                raise
            pause = min(delay, BACKOFF_MAX) * random.uniform(0.8, 1.2)  # noqa: S311 (jitter)
            echo(f"{what}: {exc.message}; trying again in {pause:.0f} s")
            time.sleep(pause)
            waited += pause
            delay *= 2


def serve(
    url: str | None,
    once: bool = False,
    poll_seconds: float = 5.0,
    echo: Callable[[str], None] = print,
) -> int:
    """Claim and run jobs until stopped (or, with once, until the queue is empty).

    A service that is down or restarting is waited for, with backoff; the worker carries on
    where it was when it answers again.
    """
    name = f"{socket.gethostname()}:{os.getpid()}"
    done = 0
    while True:
        claim = retrying(
            lambda: api_call("POST", "/api/v1/jobs/claim", {"worker": name}, url=url),
            echo,
            "claiming a job",
        )
        if claim is None:
            if once:
                return done
            time.sleep(poll_seconds)
            continue
        echo(
            f"claimed job {claim['job'][:8]} ({claim['family']} v{claim['version']}, "
            f"attempt {claim['attempt']})"
        )
        done += train_claimed(claim, url, echo)
