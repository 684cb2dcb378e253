"""What the webhook tests share with the pipeline test: a receiver process, a subscribed
policy, and a clock the sender reads."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from governance.config import DEFAULT_POLICY_DIR
from governance.db import utcnow

SUBSCRIBER = "legal-hooks"


class Receiver:
    def __init__(self, tmp_path: Path, secret: str, *args: str) -> None:
        self.log = tmp_path / f"received-{len(list(tmp_path.glob('received-*')))}.jsonl"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.webhooks.receiver", secret, str(self.log), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/hooks"

    def received(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process.stdout.close()


def subscribe(tmp_path: Path, url: str, **options) -> Path:
    """A copy of the policy with one subscriber to consumer-tax's lifecycle events."""
    policies = tmp_path / "policies"
    shutil.rmtree(policies, ignore_errors=True)
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    document = yaml.safe_load((policies / "domains.yaml").read_text())
    document["domains"]["consumer-tax"]["webhooks"] = [
        {"name": SUBSCRIBER, "url": url, "events": ["*"], **options}
    ]
    (policies / "domains.yaml").write_text(yaml.safe_dump(document))
    return policies


class Clock:
    """The sender's clock: real time plus an offset the test moves past each backoff."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(seconds=1)

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)
