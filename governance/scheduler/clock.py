"""A controllable clock for APScheduler: run the real scheduler's due-job logic (next fire
times from the job store, coalescing, the misfire grace) at a simulated moment.

Used by the time-warp test and by `govern demo` to let a year pass in a second. APScheduler
3.x reads the time with `datetime.now` in its scheduler and executor modules; inside `warp`
those read the simulated moment. Jobs run in the calling thread (the debug executor).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()


class WarpedDatetime(dt.datetime):
    """A datetime whose now() is the simulated moment."""

    moment: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

    @classmethod
    def now(cls, tz=None):
        return cls.moment.astimezone(tz) if tz else cls.moment.replace(tzinfo=None)


@contextmanager
def warp(moment: dt.datetime) -> Iterator[None]:
    """Within the block, APScheduler and the refresh's tax-year clock read `moment`."""
    import apscheduler.executors.base as executors
    import apscheduler.schedulers.base as schedulers

    from governance.scheduler import process

    with _lock:
        saved = schedulers.datetime, executors.datetime, process.now
        WarpedDatetime.moment = moment
        schedulers.datetime = executors.datetime = WarpedDatetime
        process.now = lambda: moment
        try:
            yield
        finally:
            schedulers.datetime, executors.datetime, process.now = saved


def _one_shot_class():
    from apscheduler.schedulers.base import BaseScheduler

    class OneShotScheduler(BaseScheduler):
        """No thread of its own: due jobs are processed when asked, in the caller's thread."""

        def wakeup(self) -> None:
            return None

        def shutdown(self, wait: bool = True) -> None:
            super().shutdown(wait)

    return OneShotScheduler


def run_due(config: dict, moment: dt.datetime) -> list[str]:
    """Start a scheduler on the job store at `moment`, fire what is due, stop; return the ids
    of the jobs that fired. Each call is a scheduler process starting and stopping."""
    from apscheduler.events import EVENT_JOB_EXECUTED

    from governance import runtime
    from governance.scheduler.process import build_scheduler, sync_families, use_settings

    use_settings(config)
    database_url = config["GOVERNANCE_DATABASE_URL"]
    fired: list[str] = []
    db = runtime.database_for(database_url)
    with warp(moment):
        scheduler = build_scheduler(
            database_url, executor="debug", scheduler_class=_one_shot_class()
        )
        scheduler.add_listener(lambda event: fired.append(event.job_id), EVENT_JOB_EXECUTED)
        scheduler.start()
        try:
            sync_families(scheduler, db)
            scheduler._process_jobs()  # the scheduler's own pass over due jobs, run once
        finally:
            scheduler.shutdown(wait=True)
            db.dispose()
    return fired
