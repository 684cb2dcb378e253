"""One scan spread over worker processes: four job runners, four Celery workers, and a worker
killed with SIGKILL mid-shard. Each gives the receipt one process gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from governance import runtime
from governance.db import get_db
from governance.jobs.models import Job, JobKind
from governance.pii.scanner import Scanner
from tests.factories import auth, celery_worker
from tests.pii.test_shards import in_process, records, upload
from tests.pii.test_shards import world as world  # a fixture

pytestmark = pytest.mark.slow

RECORDS = 1200
SHARD_BYTES = 6000


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def worker_env(app, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GOVERNANCE_HOME": app.config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": app.config["GOVERNANCE_DATABASE_URL"],
        "GOVERNANCE_POLICY_DIR": app.config["GOVERNANCE_POLICY_DIR"],
        "SCAN_WORKER_WARM": "1",
        **extra,
    }


def runner(app, log: Path, **extra: str) -> subprocess.Popen:
    """A real job runner process (`govern jobs run`), its log written to `log`."""
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "governance.cli", "jobs", "run", "--poll", "0.1"],
            env=worker_env(app, **extra),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def wait_ready(logs: list[Path], word: str = "scanner loaded", timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(word in log.read_text() for log in logs):
            return
        time.sleep(0.2)
    raise AssertionError("workers not ready: " + " | ".join(log.read_text()[-500:] for log in logs))


def follow(client, location: str, headers, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(location, headers=headers).get_json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"the scan did not finish: {job}")


def shard_jobs(app) -> list[Job]:
    with get_db(app).unit_of_work() as session:
        jobs = session.exec(sa.select(Job).where(Job.kind == JobKind.SCAN_SHARD)).scalars().all()
        session.expunge_all()
        return sorted(jobs, key=lambda j: j.params["shard"])


def start_scan(app, client, world, shard_bytes: int = SHARD_BYTES) -> tuple[dict, str]:
    """Upload a sharded version and queue its scan as a job: (the version, the job's
    location). Nothing has scanned it yet, so the workers find nothing in the cache."""
    app.config["DATASET_SHARD_BYTES"] = shard_bytes
    version = upload(client, world, records(RECORDS))
    started = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions/{version['version']}/scans",
        headers=auth(world["casey"]),
    )
    assert started.status_code == 202
    return version, started.headers["Location"]


def reference(app, version: dict, scanner) -> str:
    """The digest of the same version scanned in this process, after the workers (its texts
    are all in the cache by then, which changes nothing in the receipt)."""
    runtime.of(app).use(scanner=scanner)
    return in_process(app, version["version"], scanner).digest


def held_by(job: Job, process: subprocess.Popen) -> bool:
    return job.state == "running" and (job.worker or "").endswith(f":{process.pid}")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def test_four_job_runners_scan_a_version_as_one_process_does(app, client, world, scanner, tmp_path):
    logs = [tmp_path / f"runner-{i}.log" for i in range(4)]
    processes = [runner(app, log) for log in logs]
    try:
        wait_ready(logs)
        version, location = start_scan(app, client, world)
        job = follow(client, location, auth(world["casey"]))
    finally:
        stop(processes)
    assert job["state"] == "succeeded", job
    receipt = job["result"]["receipt"]
    assert receipt["records_total"] == RECORDS
    assert receipt["digest"] == reference(app, version, scanner)
    shards = job["result"]["shards"]
    assert shards["count"] == version["shards"] >= 8
    assert len(shards["by_worker"]) >= 2, shards  # the shards were spread, not run by one
    jobs = shard_jobs(app)
    assert all(j.state == "succeeded" and j.attempt == 1 and j.worker for j in jobs)


def test_four_celery_workers_scan_a_version_as_one_process_does(
    app, client, world, scanner, tmp_path
):
    import redis

    sqlite = app.config["GOVERNANCE_DATABASE_URL"].startswith("sqlite")
    broker = f"redis://127.0.0.1:6379/{10 if sqlite else 11}"
    redis.Redis.from_url(broker).flushdb()
    app.config.update(JOBS_EXECUTOR="celery", CELERY_BROKER_URL=broker)
    env = worker_env(app, CELERY_BROKER_URL=broker, JOBS_EXECUTOR="celery")
    logs = [tmp_path / f"celery-{i}.log" for i in range(4)]
    workers = [
        celery_worker("governance.workers.celery_app", "governance-jobs", env, log) for log in logs
    ]
    try:
        wait_ready(logs)
        version, location = start_scan(app, client, world)
        job = follow(client, location, auth(world["casey"]))
    finally:
        stop(workers)
    assert job["state"] == "succeeded", (job, logs[0].read_text()[-2000:])
    assert job["result"]["receipt"]["digest"] == reference(app, version, scanner)
    assert len(job["result"]["shards"]["by_worker"]) >= 2, job["result"]["shards"]
    jobs = shard_jobs(app)
    assert len(jobs) == version["shards"]
    assert all(j.state == "succeeded" and j.executor == "celery" for j in jobs)
    assert sum("governance.run_job" in log.read_text() for log in logs) >= 2


def test_a_worker_killed_mid_shard_loses_nothing_and_only_its_shard_is_repeated(
    app, client, world, scanner, tmp_path
):
    logs = [tmp_path / f"runner-{i}.log" for i in range(2)]
    processes = [runner(app, log, JOB_LEASE_SECONDS="3") for log in logs]
    try:
        wait_ready(logs)
        # Fewer, longer shards: a second or so of scanning each.
        version, location = start_scan(app, client, world, shard_bytes=4 * SHARD_BYTES)
        # Wait until the first runner holds a shard, then kill it; what it held stays in the
        # database as it was (it can write nothing more).
        victim = processes[0]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(held_by(job, victim) for job in shard_jobs(app)):
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                break
            time.sleep(0.02)
        killed = [job.params["shard"] for job in shard_jobs(app) if held_by(job, victim)]
        assert len(killed) == 1, "the first runner never held a shard"
        job = follow(client, location, auth(world["casey"]))
    finally:
        stop(processes)
    assert job["state"] == "succeeded", job
    receipt = job["result"]["receipt"]
    assert receipt["records_total"] == RECORDS
    assert receipt["digest"] == reference(app, version, scanner)
    jobs = shard_jobs(app)
    assert all(j.state == "succeeded" for j in jobs)
    # Only the killed shard ran twice; every other shard once.
    repeated = {j.params["shard"]: j.attempt for j in jobs if j.attempt > 1}
    assert repeated == {killed[0]: 2}, repeated
    assert job["result"]["shards"]["retried"] == killed
