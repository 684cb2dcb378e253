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
