"""One gap-free sequence when many processes append at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from governance import runtime
from governance.audit.models import AuditEntry
from governance.audit.service import log_size
from governance.db import get_db
from governance.flows.log_export import verify_log
from tests.factories import make_domain, principal_token

APPENDER = """
import sys, threading
from governance.audit.service import AuditEvent, AuditLog
from governance.db import Database

url, home, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
db = Database(url)
log = AuditLog(db, home, checkpoint_seconds=0)

def run(thread):
    for i in range(count):
        log.append(AuditEvent(f"proc{worker}", "read", "domain", "consumer-tax", "allow",
                              details={"thread": thread, "i": i}))

threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
log.close()
db.dispose()
"""


def assert_one_sequence(app) -> int:
    with get_db(app).unit_of_work() as session:
        seqs = list(session.exec(sa.select(AuditEntry.seq).order_by(AuditEntry.seq)).scalars())
        assert seqs == list(range(1, len(seqs) + 1)), "the sequence has gaps or duplicates"
        assert log_size(session) == len(seqs)
        runtime.of(app).audit_log.checkpoint()
        result = verify_log(session, runtime.of(app).audit_log.signing_key.public_key())
        assert result.verified_upto == len(seqs)
        return len(seqs)


def test_processes_appending_at_once_form_one_sequence(app, config):
    before = assert_one_sequence(app)
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                APPENDER,
                config["GOVERNANCE_DATABASE_URL"],
                config["GOVERNANCE_HOME"],
                str(worker),
                "50",
            ],
        )
        for worker in range(4)
    ]
    for process in processes:
        assert process.wait(timeout=300) == 0
    assert assert_one_sequence(app) == before + 4 * 4 * 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(config, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "GOVERNANCE_HOME": config["GOVERNANCE_HOME"],
        "GOVERNANCE_DATABASE_URL": config["GOVERNANCE_DATABASE_URL"],
        "AUDIT_CHECKPOINT_SECONDS": "1",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            "3",
            "-b",
            f"127.0.0.1:{port}",
            "governance.app:create_app()",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/api/v1/health", timeout=10).close()
                break
            except OSError:
                # Not listening yet, or a worker still importing: try again until the deadline.
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("gunicorn did not start; see gunicorn.log")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_gunicorn_workers_serving_at_once_form_one_sequence(app, gunicorn):
    make_domain(app, "consumer-tax")
    token = principal_token(app, "casey")

    def call(i: int) -> int:
        path = "/api/v1/domains/consumer-tax" if i % 2 else "/api/v1/domains/smb-accounting"
        request = urllib.request.Request(
            gunicorn + path,
            headers={"Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(call, range(240)))
    assert statuses.count(200) == 120 and statuses.count(403) == 120
    assert_one_sequence(app)
    with get_db(app).unit_of_work() as session:
        logged = session.exec(
            sa.select(sa.func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.principal == "casey", AuditEntry.action == "read")
        ).one()
    assert logged[0] == 240


def test_an_entry_the_database_refuses_fails_only_its_own_request(app):
    """Group commit writes many requests' entries in one transaction; an entry the database
    refuses (on PostgreSQL, a value longer than its column) fails only its own call."""
    import threading

    from governance.audit.service import AuditEvent

    log = runtime.of(app).audit_log

    def event(principal: str) -> AuditEvent:
        return AuditEvent(
            principal=principal, action="authorize", object="model/x", domain=None,
            decision="allow", policy_hash="0" * 64, request_id=None, details={},
        )  # fmt: skip

    gate = threading.Barrier(9)
    outcomes: dict[str, object] = {}

    def call(name: str, principal: str) -> None:
        gate.wait()
        try:
            outcomes[name] = log.append(event(principal))
        except RuntimeError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=call, args=(f"good-{n}", f"user-{n}")) for n in range(8)]
    threads.append(threading.Thread(target=call, args=("hostile", "x" * 500)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    good = [outcomes[f"good-{n}"] for n in range(8)]
    assert all(isinstance(seq, int) for seq in good), outcomes
    if get_db(app).engine.dialect.name == "postgresql":
        assert isinstance(outcomes["hostile"], RuntimeError)
    with get_db(app).unit_of_work() as session:
        assert verify_log(session, log.signing_key.public_key()).entries == log_size(session)
