"""The yearly refresh: the scheduler and an on-demand refresh."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from governance.cli.base import fail_cleanly, instance_session, open_database, settings
from governance.runtime import executor_for, version_signer

if TYPE_CHECKING:
    pass


@click.command()
@click.option(
    "--lease-seconds", default=15.0, show_default=True, help="Leader lease; standby takeover."
)
@fail_cleanly
def scheduler(lease_seconds: float) -> None:
    """Run the refresh scheduler (APScheduler, job store in the service's database).

    Run one or more per database; only the leader fires jobs. Stop with SIGTERM or Ctrl-C.
    """
    import signal
    import threading

    from governance.scheduler.process import run_scheduler

    config = settings()
    open_database()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_scheduler(config, stop, lease_seconds=lease_seconds, echo=click.echo)


@click.command()
@click.argument("family", metavar="FAMILY|status")
@click.option("--tax-year", type=click.IntRange(1900, 2200), default=None)
@fail_cleanly
def refresh(family: str, tax_year: int | None) -> None:
    """Run FAMILY's refresh pipeline for a tax year now, or show every family's status.

    `govern refresh tax-assistant --tax-year 2026` starts (or resumes) the refresh and
    advances it as far as it can go; `govern refresh status` lists each family's last and
    next refresh and the step it is on.
    """
    from sqlmodel import select

    from governance.authz.policy import policy_hash
    from governance.errors import InvalidInput, NotFound
    from governance.families.models import ModelFamily
    from governance.families.service import find_family
    from governance.scheduler.models import RefreshRun
    from governance.scheduler.pipeline import advance, refresh_actor, start_run
    from governance.scheduler.process import next_fire_times

    config = settings()
    if family == "status" and tax_year is None:
        upcoming = next_fire_times(config["GOVERNANCE_DATABASE_URL"])
        with instance_session() as session:
            for fam in session.exec(select(ModelFamily).order_by(ModelFamily.name)):
                last = session.exec(
                    select(RefreshRun)
                    .where(RefreshRun.family_id == fam.id)
                    .order_by(RefreshRun.tax_year.desc(), RefreshRun.attempt.desc())
                ).first()
                state = (
                    f"tax year {last.tax_year} attempt {last.attempt}: {last.step}"
                    + (f" (waiting for {last.waiting_for})" if last.waiting_for else "")
                    if last
                    else "never refreshed"
                )
                nxt = upcoming.get(fam.name)
                click.echo(
                    f"{fam.name}\t{state}\tnext: "
                    f"{nxt.isoformat() if nxt else 'not scheduled (no scheduler has run)'}"
                    f"\tschedule: {fam.refresh_schedule}"
                )
        return
    if tax_year is None:
        raise InvalidInput("--tax-year is required", details={"field": "tax_year"})
    actor = refresh_actor(policy_hash(config["GOVERNANCE_POLICY_DIR"]))
    with instance_session() as session:
        found = find_family(session, family)
        if found is None:
            raise NotFound(f"no model family {family!r}")
        run, created = start_run(session, found[0], tax_year, "manual", actor)
        run = advance(
            session,
            run,
            config["GOVERNANCE_POLICY_DIR"],
            actor,
            version_signer(config),
            executor_for(config),
        )
        click.echo(
            f"{family} tax year {tax_year} attempt {run.attempt} "
            f"({'started' if created else 'resumed'}): {run.step}"
            + (f", waiting for {run.waiting_for}" if run.waiting_for else "")
        )
