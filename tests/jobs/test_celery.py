"""Production runs the service's jobs as Celery tasks: a real Celery worker, a real broker."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.factories import auth, celery_worker, create_dataset, make_domain, principal_token

pytestmark = pytest.mark.slow


def test_a_celery_worker_runs_a_scan_sent_through_redis(app, client, tmp_path):
    import redis

    sqlite = app.config["GOVERNANCE_DATABASE_URL"].startswith("sqlite")
    broker = f"redis://127.0.0.1:6379/{12 if sqlite else 13}"
    redis.Redis.from_url(broker).flushdb()
    app.config.update(JOBS_EXECUTOR="celery", CELERY_BROKER_URL=broker)
    make_domain(app, "consumer-tax")
    casey = principal_token(app, "casey")
    dataset = create_dataset(client, casey, "consumer-tax", "returns")
    uploaded = client.post(
        f"/api/v1/datasets/{dataset}/versions",
        query_string={"tax_year": 2025},
        data=json.dumps({"text": "My SSN is 536-22-8741."}).encode() + b"\n",
        content_type="application/x-ndjson",
        headers=auth(casey),
    )
    assert uploaded.status_code == 201
    started = client.post(f"/api/v1/datasets/{dataset}/versions/1/scans", headers=auth(casey))
    assert started.status_code == 202
    location = started.headers["Location"]
    env = {
        **os.environ,
        "GOVERNANCE_HOME": app.config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": app.config["GOVERNANCE_DATABASE_URL"],
        "CELERY_BROKER_URL": broker,
    }
    celery = celery_worker("governance.workers.celery_app", "governance-jobs", env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = client.get(location, headers=auth(casey)).get_json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.5)
    finally:
        celery.terminate()
        _, err = celery.communicate(timeout=60)
    assert job["state"] == "succeeded", (job, err[-2000:])
    assert job["result"]["receipt"]["verdict"] == "redacted"
    assert "governance.run_job" in err
    assert job["attempt"] == 1
