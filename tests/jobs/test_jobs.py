"""Long work as jobs: 202 + Location, progress, a status only the subject's readers see, leases
that lapse back into the queue, and failures recorded rather than left running."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlmodel import select

from governance import runtime
from governance.audit.service import Actor
from governance.db import get_db, utcnow
from governance.jobs import service
from governance.jobs.executors import LocalExecutor
from governance.jobs.models import Job, JobKind, JobState
from governance.pii.scanner import Scanner
from governance.workers import runner
from tests.factories import auth, create_dataset, make_domain, principal_token, run_jobs

RECORDS = [
    {"text": "My SSN is 536-22-8741; can I e-file Form 1040?"},
    {"text": "How does Schedule C line 1 work?"},
    {"prompt": "Is the standard deduction allowed?", "completion": "See line 12."},
]

LOCAL = LocalExecutor()


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


@pytest.fixture
def world(app, client, scanner):
    runtime.of(app).use(scanner=scanner)
    make_domain(app, "consumer-tax")
    make_domain(app, "smb-accounting")
    tokens = {n: principal_token(app, n) for n in ("casey", "priya", "sam")}
    tokens["dataset"] = create_dataset(client, tokens["casey"], "consumer-tax", "returns")
    uploaded = client.post(
        f"/api/v1/datasets/{tokens['dataset']}/versions",
        query_string={"tax_year": 2025},
        data=b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS),
        content_type="application/x-ndjson",
        headers=auth(tokens["casey"]),
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    return tokens


def test_a_scan_is_a_job_followed_at_its_location(app, client, world):
    path = f"/api/v1/datasets/{world['dataset']}/versions/1/scans"
    started = client.post(path, headers=auth(world["casey"]))
    assert started.status_code == 202
    job = started.get_json()
    assert started.headers["Location"] == job["location"] == f"/api/v1/jobs/{job['job']}"
    assert (job["kind"], job["state"], job["domain"]) == ("scan", "queued", "consumer-tax")
    # Nothing was scanned inside the request: no receipt yet.
    assert client.get(path, headers=auth(world["casey"])).get_json()["items"] == []
    # The privacy reviewer of the domain may read scans, so may follow the job; a user of
    # another domain is told it does not exist.
    assert client.get(job["location"], headers=auth(world["priya"])).status_code == 200
    assert client.get(job["location"], headers=auth(world["sam"])).status_code == 404
    assert run_jobs(app) == 1
    done = client.get(job["location"], headers=auth(world["casey"])).get_json()
    assert done["state"] == "succeeded" and done["error"] is None
    assert done["progress"]["records"] == done["progress"]["total"] == len(RECORDS)
    receipt = done["result"]["receipt"]
    assert receipt["verdict"] == "redacted" and receipt["records_total"] == len(RECORDS)
    assert "536-22-8741" not in json.dumps(done)
    listed = client.get(path, headers=auth(world["casey"])).get_json()["items"]
    assert [r["id"] for r in listed] == [receipt["id"]]


def test_unknown_and_malformed_jobs_are_refused_cleanly(client, world):
    unknown = client.get(f"/api/v1/jobs/{'0' * 32}", headers=auth(world["casey"]))
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"
    # Not a uid: no route takes it (as an id beyond its column's range).
    bad = client.get("/api/v1/jobs/not-a-job", headers=auth(world["casey"]))
    assert bad.status_code == 404
    assert client.get(f"/api/v1/jobs/{'0' * 32}").status_code == 401


def test_a_deleted_version_is_refused_before_any_job_is_queued(app, client, world):
    path = f"/api/v1/datasets/{world['dataset']}/versions/1"
    assert (
        client.delete(path, json={"reason": "gone"}, headers=auth(world["casey"])).status_code
        == 200
    )
    refused = client.post(f"{path}/scans", headers=auth(world["casey"]))
    assert refused.status_code == 409
    assert run_jobs(app) == 0


def test_a_lapsed_lease_requeues_the_job_then_fails_it_after_its_attempts(app, world):
    db = get_db(app)
    with db.unit_of_work() as session:
        job = service.submit(
            session,
            JobKind.SCAN,
            "dataset-version/x",
            "consumer-tax",
            {},
            actor=Actor("t"),
            executor=LOCAL,
        )
        later = utcnow() + dt.timedelta(seconds=service.LEASE_SECONDS + 1)
        for attempt in range(1, service.MAX_ATTEMPTS + 1):
            claimed = service.claim(session, "runner-a")
            assert claimed.uid == job.uid and claimed.attempt == attempt
            # The runner dies: nobody renews the lease.
            assert service.requeue_lapsed(session, JobKind.INTERNAL, later) == 1
            session.refresh(claimed)
            last = attempt == service.MAX_ATTEMPTS
            assert claimed.state == (JobState.FAILED if last else JobState.QUEUED)
        assert "the last" in claimed.error and claimed.finished_at is not None
        assert service.claim(session, "runner-b") is None
        # A result reported by the attempt that lost its lease is not recorded.
        assert service.finish(session, claimed, {"late": True}) is False


def test_a_job_that_fails_is_recorded_as_failed_not_left_running(app, client, world):
    with get_db(app).unit_of_work() as session:
        job = service.submit(
            session,
            JobKind.SCAN,
            "dataset-version/" + "f" * 32,
            "consumer-tax",
            {"object": "scan"},
            actor=Actor("casey"),
            executor=LOCAL,
        )
    assert runner.run_once(runtime.of(app)) is not None
    done = client.get(f"/api/v1/jobs/{job.uid}", headers=auth(world["casey"])).get_json()
    assert done["state"] == "failed" and "no dataset version" in done["error"]
    assert done["result"]["code"] == "not_found"


def test_training_workers_never_claim_the_services_own_jobs(app, client, world):
    started = client.post(
        f"/api/v1/datasets/{world['dataset']}/versions/1/scans", headers=auth(world["casey"])
    )
    assert started.status_code == 202
    worker = principal_token(app, "gpu-worker", kind="service")
    claimed = client.post("/api/v1/jobs/claim", json={"worker": "w:1"}, headers=auth(worker))
    assert claimed.status_code == 204


def test_a_burst_of_one_kind_does_not_starve_another(app, world):
    """Each kind and domain has a fair share: a scan queued behind a burst of exports is
    claimed second, not after all of them."""
    db = get_db(app)
    with db.unit_of_work() as session:
        exports = [
            service.submit(
                session,
                JobKind.EXPORT,
                f"audit/{n}",
                "system",
                {},
                actor=Actor("t"),
                executor=LOCAL,
            )
            for n in range(30)
        ]
        scan = service.submit(
            session,
            JobKind.SCAN,
            "dataset-version/x",
            "consumer-tax",
            {},
            actor=Actor("t"),
            executor=LOCAL,
        )
        order = []
        for _ in range(3):  # one runner: each job ends before the next is claimed
            job = service.claim(session, "runner")
            order.append(job.uid)
            assert service.finish(session, job, {}) is True
    assert order == [exports[0].uid, scan.uid, exports[1].uid]


def test_a_job_is_announced_only_once_the_transaction_that_queued_it_commits(app):
    """`enqueue` is the only way work is queued: the executor hears of a job after commit, and
    never of one whose transaction rolled back (that job does not exist)."""
    heard: list[tuple[str, str]] = []

    class Listening(LocalExecutor):
        def submit(self, job_uid: str, kind: str) -> None:
            heard.append((job_uid, kind))

    def job(uid: str) -> Job:
        return Job(uid=uid, kind=JobKind.EXPORT, subject="audit/x", domain="system")

    with get_db(app).unit_of_work() as session:
        service.enqueue(session, job("a" * 32), Listening())
        assert heard == []
        session.rollback()
        assert heard == [] and session.exec(select(Job)).all() == []
        service.enqueue(session, job("b" * 32), Listening())
        assert heard == []
        session.commit()
        assert heard == [("b" * 32, JobKind.EXPORT)]
        stored = session.exec(select(Job)).one()
        assert (stored.uid, stored.state, stored.executor) == ("b" * 32, JobState.QUEUED, "local")
        session.commit()
        assert heard == [("b" * 32, JobKind.EXPORT)]  # announced once, not at every commit
