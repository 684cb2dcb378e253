"""The Dockerfile and compose.yaml, checked without a Docker engine (none runs here): every
service uses the image and a command `govern` has, every variable it sets is one the service
reads, every dependency exists, and the image installs from the lock file with hashes."""

from __future__ import annotations

from pathlib import Path

import yaml

from governance.cli import main
from governance.config import DEFAULTS, ENVIRONMENT_KEYS, REPOSITORY_ROOT

OTHER_VARIABLES = {"GOVERNANCE_URL", "GOVERNANCE_TOKEN", "CELERY_BROKER_URL"}


def test_compose_describes_a_runnable_deployment():
    compose = yaml.safe_load((REPOSITORY_ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"db", "redis", "init", "service", "worker", "scheduler"} <= set(services)
    known = set(ENVIRONMENT_KEYS) | set(DEFAULTS) | OTHER_VARIABLES
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], (name, volume)
        if service.get("build") is None:
            continue
        assert service["image"] == "governance:latest"
        command = service["command"][0]
        assert command in main.commands, (name, command)
        for variable in service.get("environment", {}):
            assert variable in known, (name, variable)


def test_the_worker_holds_no_keys_and_needs_its_token():
    """The design: a worker receives only the sanitized view over HTTP, so its container
    mounts no instance volume (where the master and signing keys are), only the base models,
    and reads no database;
    without a token it stops (next test) and is retried a few times, not forever."""
    compose = yaml.safe_load((REPOSITORY_ROOT / "compose.yaml").read_text())
    worker = compose["services"]["worker"]
    mounted = {volume.split(":")[0] for volume in worker.get("volumes", [])}
    assert "instance" not in mounted and mounted <= {"models"}
    assert worker["environment"]["GOVERNANCE_TOKEN"] == "${GOVERNANCE_WORKER_TOKEN:-}"
    assert "GOVERNANCE_DATABASE_URL" not in worker["environment"]
    assert worker["restart"].startswith("on-failure:")


def test_a_worker_without_a_token_says_so_and_fails(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GOVERNANCE_TOKEN"}
    env |= {"GOVERNANCE_URL": "http://127.0.0.1:9", "GOVERNANCE_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "governance.cli", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "GOVERNANCE_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_the_image_installs_from_the_lock_file_and_runs_as_its_own_user():
    lines = [
        line.strip()
        for line in (REPOSITORY_ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[0].startswith("FROM python:3.11")
    text = "\n".join(lines)
    assert "pip install --no-cache-dir torch==2.13.0" in text
    assert "--require-hashes -r requirements.lock" in text
    assert "USER governance" in text and 'ENTRYPOINT ["govern"]' in text
    for copied in ("governance", "audit", "trainers", "policies", "alembic"):
        assert f"COPY {copied} ./{copied}" in text
        assert Path(REPOSITORY_ROOT / copied).is_dir()
