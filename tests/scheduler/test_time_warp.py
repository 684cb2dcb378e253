# ruff: noqa: F811 (pytest fixtures imported from the model pipeline tests)
"""Ten simulated years of refreshes with a controllable clock: the real APScheduler logic
(job store, next fire times, coalescing, misfire grace) at simulated moments, a scheduler
that restarts at every step, a duplicate scheduler now and then, a year in which the
scheduler is down on the day, and steward uploads and deletions every year."""

from __future__ import annotations

import datetime as dt
import json
import random

import sqlalchemy as sa

from governance.db import get_db
from governance.families.models import ModelVersion
from governance.jobs.models import Job
from governance.scheduler.clock import run_due, warp
from governance.scheduler.models import RefreshRun
from governance.scheduler.process import advance_open_runs, fire_refresh
from tests.factories import auth, scan_receipt
from tests.pipeline import (  # noqa: F401 (fixtures)
    FAMILY,
    app,
    call,
    live,
    scanner,
    worker,
    world,
)
from tests.scheduler.test_refresh import approve_pending

UTC = dt.UTC


def upload_year(client, world, tax_year: int) -> int:
    records = [
        {
            "prompt": f"What changed for tax year {tax_year}, item {i}?",
            "completion": f"For {tax_year}, line {i} of Form 1040 changed.",
        }
        # 25 records: the family holds 20% out, and the gate needs 5 held-out records.
        for i in range(24)
    ] + [{"text": f"Client SSN 536-22-{8700 + tax_year % 100} asks about {tax_year}."}]
    status, version = call(
        client,
        "casey",
        world,
        "POST",
        f"/api/v1/datasets/{world['dataset']}/versions",
        query_string={"tax_year": tax_year},
        data=b"".join(json.dumps(r).encode() + b"\n" for r in records),
        content_type="application/x-ndjson",
    )
    assert status == 201, version
    answer = scan_receipt(
        client,
        f"/api/v1/datasets/{world['dataset']}/versions/{version['version']}/scans",
        auth(world["casey"]),
    )
    assert answer.status_code == 200
    return version["version"]


def approve_everything_pending(client, world) -> int:
    return approve_pending(client, world, "dataset-use", ("priya", "lee")) + approve_pending(
        client, world, "model-promotion", ("jordan", "lee")
    )


def work_the_pipeline(app, client, world, live) -> None:
    """What people and workers do after a fire: review, train, review again."""
    for _ in range(8):
        advance_open_runs()
        approved = approve_everything_pending(client, world)
        with get_db(app).unit_of_work() as session:
            queued = (
                session.exec(sa.select(Job).where(Job.kind == "train", Job.state == "queued"))
                .scalars()
                .all()
            )
        if queued:
            worker(live, world, "--once").communicate(timeout=300)
        if not approved and not queued:
            advance_open_runs()
            return


def test_ten_years_of_refreshes_one_version_per_year_none_missed(app, client, world, live):
    rng = random.Random(2026)
    config = dict(app.config)
    data_versions = {2025: 1}  # the world fixture uploaded and scanned tax year 2025
    # The first scheduler start registers the family's job: 15 January, 06:00 UTC.
    assert run_due(config, dt.datetime(2025, 12, 1, tzinfo=UTC)) == []
    duplicates = 0
    for year in range(2026, 2036):
        tax_year = year - 1
        if tax_year not in data_versions:
            data_versions[tax_year] = upload_year(client, world, tax_year)
        # Restarts: every run_due is a scheduler process starting on the persisted job store.
        assert run_due(config, dt.datetime(year, 1, 10, tzinfo=UTC)) == []
        if year == 2029:
            # The scheduler is down on the 15th and back on the 20th: the misfire grace runs
            # the late refresh instead of dropping it.
            moment = dt.datetime(year, 1, 20, 9, tzinfo=UTC)
        else:
            moment = dt.datetime(year, 1, 15, 6, 0, 30, tzinfo=UTC)
        assert run_due(config, moment) == [f"refresh:{FAMILY}"], year
        if rng.random() < 0.5:
            # A duplicate scheduler whose copy of the job fires too: the job itself runs
            # again at the same moment, and must change nothing.
            duplicates += 1
            with warp(moment):
                fire_refresh(FAMILY)
        work_the_pipeline(app, client, world, live)
        # A later pass in the same year fires nothing (coalesced, already done).
        assert run_due(config, dt.datetime(year, 3, 1, tzinfo=UTC)) == []
        with get_db(app).unit_of_work() as session:
            versions = (
                session.exec(sa.select(ModelVersion).where(ModelVersion.tax_year == tax_year))
                .scalars()
                .all()
            )
            runs = session.exec(sa.select(RefreshRun)).scalars().all()
            assert [v.status for v in versions] == ["production"], (
                year,
                [(r.tax_year, r.step, r.waiting_for, r.detail) for r in runs],
            )
            assert versions[0].training_config["from"] == "base-model"
        # The steward deletes the year before last's data once the new model serves.
        if tax_year - 1 in data_versions:
            number = data_versions.pop(tax_year - 1)
            status, _ = call(
                client,
                "casey",
                world,
                "DELETE",
                f"/api/v1/datasets/{world['dataset']}/versions/{number}",
                json={"reason": "retention period over"},
            )
            assert status == 200

    with get_db(app).unit_of_work() as session:
        versions = (
            session.exec(sa.select(ModelVersion).order_by(ModelVersion.number)).scalars().all()
        )
        runs = session.exec(sa.select(RefreshRun)).scalars().all()
    years = [v.tax_year for v in versions]
    assert years == list(range(2025, 2035)), years  # one version a year, none missed
    assert [v.status for v in versions] == ["tainted"] * 9 + ["production"]
    assert sorted((r.tax_year, r.attempt, r.step) for r in runs) == [
        (y, 1, "done") for y in range(2025, 2035)
    ]
    assert duplicates >= 3  # the seed gives several duplicate fires
