# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""The refresh pipeline and the scheduler: resumable steps, exactly once, a leader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from governance.db import get_db
from governance.families.models import ModelVersion
from governance.scheduler.models import RefreshRun
from governance.scheduler.pipeline import REFRESH_PRINCIPAL, refresh_actor, start_run
from governance.scheduler.process import advance_open_runs, use_settings
from tests.pipeline import (  # noqa: F401 (fixtures)
    FAMILY,
    app,
    approve,
    call,
    live,
    scanner,
    worker,
    world,
)
from tests.test_cli import govern


def cli_env(app) -> dict:
    return {
        "GOVERNANCE_HOME": app.config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": app.config["GOVERNANCE_DATABASE_URL"],
    }


def refresh(app, year: int = 2025) -> str:
    return govern(cli_env(app), "refresh", FAMILY, "--tax-year", str(year), check=True).stdout


def approve_pending(client, world, kind: str, reviewers) -> int:
    _, listing = call(
        client, "admin", world, "GET", "/api/v1/approvals", query_string={"state": "pending"}
    )
    pending = [r for r in listing["items"] if r["kind"] == kind]
    for request in pending:
        assert request["requested_by"] == REFRESH_PRINCIPAL
        approve(client, world, request["uid"], reviewers, "refresh reviewed")
    return len(pending)


def test_the_refresh_pipeline_waits_resumes_and_never_repeats_work(app, client, world, live):
    assert "waiting for approval of" in refresh(app)
    assert "waiting for approval of" in refresh(app)  # resumed: no second request
    assert approve_pending(client, world, "dataset-use", ("priya", "lee")) == 1
    out = refresh(app)
    assert "train, waiting for training of tax-assistant v1" in out
    assert "training of tax-assistant v1" in refresh(app)  # no second version
    done = worker(live, world, "--once")
    done.communicate(timeout=300)
    assert "approve-promotion, waiting for approval of promotion" in refresh(app)
    # The refresh requested the promotion; the engineers may approve (none of them trained).
    assert approve_pending(client, world, "model-promotion", ("morgan", "lee")) == 1
    assert refresh(app).strip().endswith(": done")

    with get_db(app).unit_of_work() as session:
        versions = session.exec(sa.select(ModelVersion)).scalars().all()
        assert [(v.number, v.tax_year, v.status) for v in versions] == [(1, 2025, "production")]
        assert versions[0].training_config["from"] == "base-model"
        family = versions[0].family_id
        # A duplicate scheduled fire for the same year changes nothing.
        from governance.families.models import ModelFamily

        run, created = start_run(
            session, session.get(ModelFamily, family), 2025, "schedule", refresh_actor("x")
        )
        assert not created and run.step == "done"
        assert len(session.exec(sa.select(RefreshRun)).scalars().all()) == 1
    status = govern(cli_env(app), "refresh", "status", check=True).stdout
    assert f"{FAMILY}\ttax year 2025 attempt 1: done" in status

    # A corrected 2025 upload, then the original is deleted: v1 is tainted, a retrain of
    # 2025 is queued, and the pipeline takes it up as attempt 2 on the data that remains.
    from tests.scheduler.test_time_warp import upload_year

    upload_year(client, world, 2025)
    status_code, _ = call(
        client,
        "casey",
        world,
        "DELETE",
        f"/api/v1/datasets/{world['dataset']}/versions/1",
        json={"reason": "replaced by the corrected upload"},
    )
    assert status_code == 200
    use_settings(dict(app.config))
    advance_open_runs()
    assert approve_pending(client, world, "dataset-use", ("priya", "lee")) == 1
    advance_open_runs()
    worker(live, world, "--once").communicate(timeout=300)
    advance_open_runs()
    assert approve_pending(client, world, "model-promotion", ("jordan", "lee")) == 1
    advance_open_runs()
    with get_db(app).unit_of_work() as session:
        versions = (
            session.exec(sa.select(ModelVersion).order_by(ModelVersion.number)).scalars().all()
        )
        assert [(v.number, v.tax_year, v.status) for v in versions] == [
            (1, 2025, "tainted"),
            (2, 2025, "production"),
        ]
        runs = session.exec(sa.select(RefreshRun).order_by(RefreshRun.id)).scalars().all()
        assert [(r.attempt, r.trigger, r.step) for r in runs] == [
            (1, "manual", "done"),
            (2, "retrain", "done"),
        ]


def test_the_refresh_under_the_celery_executor_announces_its_training_job(app, client, world):
    """A Celery-only deployment hears of work only from the broker: the refresh's training
    job is sent there, once its step has committed, as one the API starts is."""
    import redis
    from kombu import Connection

    from governance.jobs.executors import TRAIN_ROUTE
    from governance.jobs.models import Job

    # One Redis database per test database (`make test` runs both at once), not the ones the
    # Celery worker test uses.
    sqlite = app.config["GOVERNANCE_DATABASE_URL"].startswith("sqlite")
    broker = f"redis://127.0.0.1:6379/{12 if sqlite else 13}"
    redis.Redis.from_url(broker).flushdb()
    env = {**cli_env(app), "JOBS_EXECUTOR": "celery", "CELERY_BROKER_URL": broker}
    with Connection(broker) as connection:
        queue = connection.SimpleQueue(TRAIN_ROUTE[1])  # bound, as a Celery worker binds it
        assert (
            "waiting for approval of" in govern(env, "refresh", FAMILY, "--tax-year", "2025").stdout
        )
        assert approve_pending(client, world, "dataset-use", ("priya", "lee")) == 1
        out = govern(env, "refresh", FAMILY, "--tax-year", "2025", check=True).stdout
        assert "train, waiting for training of tax-assistant v1" in out
        message = queue.get(timeout=10)
        assert message.headers["task"] == TRAIN_ROUTE[0]
        [job_uid], _kwargs, _embed = message.payload
        message.ack()
        # Resumed, the step sends nothing again.
        govern(env, "refresh", FAMILY, "--tax-year", "2025", check=True)
        with pytest.raises(queue.Empty):
            queue.get(timeout=2)
        queue.close()
    with get_db(app).unit_of_work() as session:
        job = session.exec(sa.select(Job).where(Job.kind == "train")).scalar_one()
        assert (job.uid, job.executor, job.state) == (job_uid, "celery", "queued")


def test_two_schedulers_on_one_database_produce_one_refresh(app, client, world, backend):
    if backend.name != "postgresql":
        pytest.skip("two scheduler processes are a PostgreSQL deployment")
    with get_db(app).engine.begin() as connection:
        connection.execute(sa.text("UPDATE model_families SET refresh_schedule = '* * * * *'"))
    env = {**os.environ, **cli_env(app)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "governance.cli", "scheduler", "--lease-seconds", "6"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        import time

        deadline = time.monotonic() + 100
        runs = []
        while time.monotonic() < deadline and not runs:
            time.sleep(1)
            with get_db(app).unit_of_work() as session:
                runs = session.exec(sa.select(RefreshRun)).scalars().all()
        time.sleep(5)  # room for a duplicate fire, had there been one
    finally:
        outputs = []
        for process in processes:
            process.send_signal(signal.SIGTERM)
            outputs.append(process.communicate(timeout=60))
    with get_db(app).unit_of_work() as session:
        runs = session.exec(sa.select(RefreshRun)).scalars().all()
    assert [(r.tax_year, r.attempt, r.trigger) for r in runs] == [(2025, 1, "schedule")]
    # Whoever led (a standby takes over if the leader stalls past its lease), the unique
    # (family, tax year, attempt) kept it to one refresh.
    assert any(" leads: 1 family schedule(s)" in out for out, _err in outputs), outputs
