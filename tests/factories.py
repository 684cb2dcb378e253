"""Build principals and tokens for tests through the same services the product uses."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from governance import runtime
from governance.accounts import service as accounts
from governance.accounts.models import PrincipalKind
from governance.audit.service import Actor
from governance.db import get_db, utcnow
from governance.domains import service as domains
from governance.domains.models import DomainCreate

TEST_ACTOR = Actor("tests", "test-request", None)


def principal_token(app, name: str, kind: str = "user", expires_in: dt.timedelta | None = None):
    """Create the principal if needed and return a fresh bearer token for it."""
    with get_db(app).unit_of_work() as session:
        accounts.ensure_principal(session, name, PrincipalKind(kind), actor=TEST_ACTOR)
        principal = accounts.get_principal(session, name)
        record, token = accounts.issue_token(
            session, principal, expires_at=utcnow() + dt.timedelta(hours=1), actor=TEST_ACTOR
        )
        if expires_in is not None:
            # Tests may want a token that is already past its expiry, which issue_token refuses.
            record.expires_at = utcnow() + expires_in
            session.add(record)
            session.commit()
        return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_dataset(client, token: str, domain: str, name: str, **fields) -> int:
    """Create a dataset through the API as the given principal; return its id."""
    created = client.post(
        f"/api/v1/domains/{domain}/datasets", json={"name": name, **fields}, headers=auth(token)
    )
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


def make_domain(app, name: str, jurisdiction: str = "US", retention_days: int = 2555):
    with get_db(app).unit_of_work() as session:
        return domains.create_domain(
            session,
            DomainCreate(name=name, jurisdiction=jurisdiction, retention_days=retention_days),
            actor=TEST_ACTOR,
        )


def row_count(app, table: str) -> int:
    import sqlalchemy as sa

    with get_db(app).engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()  # noqa: S608


def close_app(app) -> None:
    """Stop the app's audit writer (and its periodic checkpoints) and close its database.

    A writer left running would sign checkpoints, with this app's key, into the next test's
    log when the database is shared (PostgreSQL).
    """
    from governance import runtime

    runtime.of(app).close()


def make_family(app, name: str, domain: str, base: str = "registered-base") -> None:
    """A model family row in a domain (its base model registered by name only), for tests
    about approvals that need a family but no training."""
    import sqlmodel

    from governance.domains.models import Domain
    from governance.families.models import BaseModelRecord, ModelFamily

    with get_db(app).unit_of_work() as session:
        record = session.exec(
            sqlmodel.select(BaseModelRecord).where(BaseModelRecord.name == base)
        ).first()
        if record is None:
            record = BaseModelRecord(
                name=base,
                path="/nonexistent",
                weights_hash="0" * 64,
                architecture="llama",
                registered_by="test",
            )
            session.add(record)
            session.flush()
        owner = session.exec(sqlmodel.select(Domain).where(Domain.name == domain)).one()
        session.add(
            ModelFamily(
                name=name,
                domain_id=owner.id,
                base_model_id=record.id,
                refresh_schedule="0 6 15 1 *",
                created_by="test",
            )
        )
        session.commit()


class Answer:
    """A status and a JSON body, read like a test client's response."""

    def __init__(self, status_code: int, body) -> None:
        self.status_code, self.body = status_code, body

    def get_json(self):
        return self.body


def run_jobs(app) -> int:
    """Run every queued job (scans, evaluations) in this process, as `govern jobs run` would."""
    from governance.workers.runner import run_pending

    return run_pending(runtime.of(app))


def settle_jobs(app, timeout: float = 300.0) -> None:
    """Wait until no scan or evaluation job is queued or running (a runner thread runs them)."""
    import time

    import sqlalchemy as sa

    from governance.jobs.models import Job, JobKind, JobState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_db(app).unit_of_work() as session:
            busy = session.execute(
                sa.select(sa.func.count())
                .select_from(Job)
                .where(
                    Job.kind.in_(JobKind.INTERNAL),
                    Job.state.in_([JobState.QUEUED, JobState.RUNNING]),
                )
            ).scalar_one()
        if not busy:
            return
        time.sleep(0.1)
    raise AssertionError(f"jobs still busy after {timeout} s")


def finished_job(app, client, response, headers: dict[str, str]) -> dict:
    """Follow a `202 Accepted` job answer: run the queue here and return the finished job."""
    assert response.status_code == 202, response.get_json()
    location = response.headers["Location"]
    assert location == response.get_json()["location"]
    run_jobs(app)
    settle_jobs(app)  # A runner thread (the `live` fixture's) may have taken it instead.
    answer = client.get(location, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def scan_receipt(client, path: str, headers: dict[str, str]) -> Answer:
    """Start a scan (POST .../scans) and run it to its end: (200, the receipt). A scan refused
    before it starts answers as the request did (404, 409 ...)."""
    response = client.post(path, headers=headers)
    if response.status_code != 202:
        return Answer(response.status_code, response.get_json())
    job = finished_job(client.application, client, response, headers)
    # A scan whose scanner failed keeps its error receipt and ends failed.
    failed_closed = job["state"] == "failed" and "receipt" in (job.get("result") or {})
    assert job["state"] == "succeeded" or failed_closed, job
    return Answer(200, job["result"]["receipt"])


def celery_worker(app_module: str, queue: str, env: dict[str, str], log: Path | None = None):
    """Start a real Celery worker process (one task at a time) on a queue; stderr is piped,
    or written to `log`."""
    import subprocess

    if log is not None:
        with log.open("w") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                celery_command(app_module, queue),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
                text=True,
            )
    return subprocess.Popen(
        celery_command(app_module, queue),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def celery_command(app_module: str, queue: str) -> list[str]:
    import sys

    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app_module,
        "worker",
        "-Q",
        queue,
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "info",
    ]


def bundle_bytes(app, session, job) -> bytes:
    """A training job's bundle, as the worker downloads it."""
    import io

    from governance.training import service

    rt = runtime.of(app)
    out = io.BytesIO()
    service.build_bundle(session, rt.keyring, rt.store, job, out, rt.home / "tmp")
    return out.getvalue()
