"""`govern scheduler`: APScheduler 3.x in one dedicated process, never inside gunicorn.

Jobs live in APScheduler's SQLAlchemy job store in the service's database: one cron job per
model family (`refresh:<family>`, its `refresh_schedule`), kept in sync with the families,
one interval job that advances the open refresh runs, and a daily retention pass
(governance/flows/retention.py). `coalesce=True` and
`max_instances=1`; a generous misfire grace runs a late refresh instead of dropping it.

Several scheduler processes may point at one database: only the holder of the leader lease
(a row renewed every few seconds) runs the APScheduler; the others wait to take over. A
duplicate fire anyway changes nothing, since a refresh run is unique per (family, tax year,
attempt).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from governance import runtime
from governance.authz.policy import policy_hash
from governance.db import Database, utcnow
from governance.runtime import version_signer
from governance.scheduler.models import SchedulerLease
from governance.scheduler.pipeline import (
    advance,
    open_runs,
    refresh_actor,
    start_run,
    take_up_retrains,
    tax_year_for,
)

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
LEASE_SECONDS = 15.0
MISFIRE_GRACE_SECONDS = 60 * 24 * 3600  # a refresh up to 60 days late still runs
ADVANCE_SECONDS = 10
JOB_TABLE = "apscheduler_jobs"
RETENTION_HOURS = 24


def now() -> dt.datetime:
    """The scheduler's clock (the time-warp test and the demo move it)."""
    return utcnow()


# The settings the scheduled jobs use: those of the process that runs the scheduler.
_settings: dict[str, Any] = {}


def _config() -> dict[str, Any]:
    from governance.config import load_config

    return _settings or load_config()


def use_settings(config: dict[str, Any]) -> None:
    """Make scheduled jobs in this process use these settings (database, policy)."""
    _settings.clear()
    _settings.update(config)


def fire_refresh(family_name: str) -> None:
    """The scheduled job: start (once) and advance the family's refresh for last tax year."""
    from governance.families.service import find_family

    config = _config()
    db = runtime.database_for(config)
    actor = refresh_actor(policy_hash(config["GOVERNANCE_POLICY_DIR"]))
    try:
        with db.unit_of_work() as session:
            found = find_family(session, family_name)
            if found is None:
                log.warning("family %s is gone; nothing to refresh", family_name)
                return
            run, created = start_run(session, found[0], tax_year_for(now()), "schedule", actor)
            log.info(
                "refresh of %s for tax year %s: %s",
                family_name,
                run.tax_year,
                "started" if created else "already under way (duplicate fire ignored)",
            )
            advance(
                session,
                run,
                config["GOVERNANCE_POLICY_DIR"],
                actor,
                version_signer(config),
                runtime.executor_for(config),
            )
    finally:
        db.dispose()


def advance_open_runs() -> int:
    """Advance every refresh run that is not finished; return how many there were."""
    config = _config()
    db = runtime.database_for(config)
    actor = refresh_actor(policy_hash(config["GOVERNANCE_POLICY_DIR"]))
    try:
        with db.unit_of_work() as session:
            take_up_retrains(session, actor)
            runs = open_runs(session)
            sign, executor = version_signer(config), runtime.executor_for(config)
            for run in runs:
                try:
                    advance(session, run, config["GOVERNANCE_POLICY_DIR"], actor, sign, executor)
                except Exception:
                    session.rollback()
                    log.exception("advancing refresh run %s failed; it will be retried", run.id)
            return len(runs)
    finally:
        db.dispose()


def enforce_retention() -> int:
    """The daily retention pass over every domain; return how many records it pruned."""
    from governance.audit.service import Actor
    from governance.flows.retention import enforce

    config = _config()
    db = runtime.database_for(config)
    actor = Actor("scheduler", None, policy_hash(config["GOVERNANCE_POLICY_DIR"]))
    try:
        with db.unit_of_work() as session:
            results = enforce(
                session, config["GOVERNANCE_POLICY_DIR"], config["GOVERNANCE_HOME"], actor, now()
            )
        for result in results:
            if result.count:
                log.info("retention: %s %s: %d pruned", result.domain, result.kind, result.count)
        return sum(r.count for r in results)
    finally:
        db.dispose()


def acquire_lease(db: Database, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Take or renew the leader lease; True while this process leads."""
    now = utcnow()
    expires = now + dt.timedelta(seconds=seconds)
    with db.engine.begin() as connection:
        table = SchedulerLease.__table__
        taken = connection.execute(
            sa.update(table)
            .where(table.c.name == LEASE_NAME)
            .where(sa.or_(table.c.holder == holder, table.c.expires_at < now))
            .values(holder=holder, expires_at=expires)
        ).rowcount
        if taken:
            return True
        exists = connection.execute(
            sa.select(table.c.name).where(table.c.name == LEASE_NAME)
        ).first()
    if exists:
        return False
    try:
        with db.engine.begin() as connection:
            connection.execute(
                sa.insert(SchedulerLease.__table__).values(
                    name=LEASE_NAME, holder=holder, expires_at=expires
                )
            )
        return True
    except sa.exc.IntegrityError:
        return False


def release_lease(db: Database, holder: str) -> None:
    table = SchedulerLease.__table__
    with db.engine.begin() as connection:
        connection.execute(
            sa.delete(table).where(table.c.name == LEASE_NAME, table.c.holder == holder)
        )


def sync_families(scheduler, db: Database) -> int:
    """Register each family's cron job; drop the jobs of families that are gone."""
    from governance.families.cron import validate_cron
    from governance.families.models import ModelFamily

    with db.session_scope() as session:
        families = {f.name: f.refresh_schedule for f in session.exec(select(ModelFamily))}
    for name, cron in families.items():
        job_id = f"refresh:{name}"
        trigger = validate_cron(cron)
        existing = scheduler.get_job(job_id)
        if existing is None or str(existing.trigger) != str(trigger):
            scheduler.add_job(
                fire_refresh,
                trigger,
                id=job_id,
                name=f"yearly refresh of {name}",
                args=[name],
                replace_existing=True,
            )
    for job in scheduler.get_jobs():
        if job.id.startswith("refresh:") and job.id.removeprefix("refresh:") not in families:
            scheduler.remove_job(job.id)
    return len(families)


def build_scheduler(database_url: str, executor: str = "threadpool", scheduler_class=None):
    """An APScheduler on the service database's job store (`debug` runs jobs inline)."""
    from apscheduler.executors.debug import DebugExecutor
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from governance.config import normalize_database_url

    return (scheduler_class or BackgroundScheduler)(
        jobstores={
            "default": SQLAlchemyJobStore(
                url=normalize_database_url(database_url), tablename=JOB_TABLE
            )
        },
        executors={"default": DebugExecutor() if executor == "debug" else ThreadPoolExecutor(4)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
        },
        timezone="UTC",
    )


def run_scheduler(
    config: dict[str, Any],
    stop: threading.Event | None = None,
    lease_seconds: float = LEASE_SECONDS,
    advance_seconds: float = ADVANCE_SECONDS,
    echo=print,
) -> None:
    """Lead when the lease is free, run APScheduler while leading, stand by otherwise."""
    use_settings(config)
    database_url = config["GOVERNANCE_DATABASE_URL"]
    stop = stop or threading.Event()
    holder = f"{socket.gethostname()}:{os.getpid()}"
    db = runtime.database_for(database_url)
    scheduler = None
    try:
        while not stop.is_set():
            leading = acquire_lease(db, holder, lease_seconds)
            log.debug("%s lease: %s", holder, leading)
            if leading and scheduler is None:
                scheduler = build_scheduler(database_url)
                scheduler.start(paused=True)
                count = sync_families(scheduler, db)
                scheduler.add_job(
                    advance_open_runs,
                    "interval",
                    seconds=advance_seconds,
                    id="advance-refresh-runs",
                    replace_existing=True,
                )
                scheduler.add_job(
                    enforce_retention,
                    "interval",
                    hours=RETENTION_HOURS,
                    id="retention",
                    name="retention of audit entries, receipts and reports",
                    replace_existing=True,
                )
                scheduler.resume()
                echo(f"{holder} leads: {count} family schedule(s) registered")
            elif leading:
                sync_families(scheduler, db)
            elif scheduler is not None:
                scheduler.shutdown(wait=False)
                scheduler = None
                echo(f"{holder} lost the lead; standing by")
            stop.wait(lease_seconds / 3)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        release_lease(db, holder)
        db.dispose()


def next_fire_times(database_url: str) -> dict[str, dt.datetime | None]:
    """Each family's next scheduled refresh, read from the job store (for `refresh status`)."""
    from governance.config import normalize_database_url

    db = runtime.database_for(normalize_database_url(database_url))
    try:
        with db.engine.connect() as connection:
            if not sa.inspect(connection).has_table(JOB_TABLE):
                return {}
            rows = connection.execute(
                sa.text(f"SELECT id, next_run_time FROM {JOB_TABLE}")  # noqa: S608
            ).all()
    finally:
        db.dispose()
    return {
        row[0].removeprefix("refresh:"): (
            dt.datetime.fromtimestamp(row[1], dt.UTC) if row[1] is not None else None
        )
        for row in rows
        if row[0].startswith("refresh:")
    }
