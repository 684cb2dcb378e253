"""`govern bench --only console`: how the console's pages answer over a large audit log.

The audit page verifies the log up to the newest checkpoint in a background thread, the first
time a process shows it and then only what is new. This measures how long that verification
takes (the page itself waits at most two seconds for it), a repeat view, a view after more
entries and a new checkpoint, and the other pages, through the real app (test client, SQLite).
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.audit_log import fill_log, machine
from governance import runtime
from governance.app import create_app
from governance.config import load_config
from governance.db import get_db
from governance.instance import init_instance

PAGES = ("/console/", "/console/approvals", "/console/access", "/console/policy")


def timed_get(client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}")
    return elapsed


def run_console_bench(entries: int, echo: Callable[[str], None] = print) -> str:
    """Measure the console over a log of `entries` entries; return the BENCHMARKS.md section."""
    from governance.accounts import service as accounts
    from governance.audit.service import Actor

    with tempfile.TemporaryDirectory(prefix="governance-console-bench-") as scratch:
        home = Path(scratch) / "home"
        config = load_config({"GOVERNANCE_HOME": str(home)})
        init_instance(config)
        echo(f"filling a {entries}-entry log ...")
        fill_log(config["GOVERNANCE_DATABASE_URL"], entries)
        app = create_app({**config, "AUDIT_CHECKPOINT_SECONDS": 0})
        try:
            audit_log = runtime.of(app).audit_log
            audit_log.checkpoint()
            with get_db(app).unit_of_work() as session:
                admin = accounts.get_principal(session, "admin")
                _record, token = accounts.issue_token(
                    session,
                    admin,
                    expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                    actor=Actor("bench"),
                )
            client = app.test_client()
            page = client.get("/console/sign-in")
            nonce = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            client.post("/console/sign-in", data={"csrf_token": nonce, "token": token})
            echo("opening the audit page ...")
            page_wait = timed_get(client, "/console/audit")
            status = runtime.of(app).checkpoint_status
            started = time.perf_counter()
            status.worker.join()
            first = page_wait + time.perf_counter() - started
            repeat = timed_get(client, "/console/audit")
            added = max(1, entries // 100)
            fill_log(config["GOVERNANCE_DATABASE_URL"], added)
            audit_log.tree = type(audit_log.tree)()
            audit_log.checkpoint()
            incremental = timed_get(client, "/console/audit")
            started = time.perf_counter()
            timed_get(client, "/console/audit?verify=all")
            status.worker.join()
            full = time.perf_counter() - started
            others = {path: timed_get(client, path) for path in PAGES}
        finally:
            audit_log.close()
            get_db(app).dispose()
    rows = [
        ("audit page, first view (answers while the verification goes on)", page_wait),
        (f"first verification of {entries:,} entries, in the background", first),
        ("audit page, repeat view (nothing new)", repeat),
        (f"audit page after {added:,} more entries and a new checkpoint", incremental),
        ("“verify again from entry 1”, until done", full),
        *((f"`{path}`", seconds) for path, seconds in others.items()),
    ]
    lines = [
        "## Console",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on: {machine()}.",
        "",
        f"One process, SQLite, signed in as `admin`, Flask's test client (no network), over an "
        f"audit log of {entries:,} entries with a signed checkpoint at its end. Each figure is "
        "one request, except the two verification rows: the time until the background "
        "verification had finished (the page waits for it at most two seconds).",
        "",
        "| page | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {seconds:.3f} |" for name, seconds in rows),
        "",
    ]
    return "\n".join(lines)
