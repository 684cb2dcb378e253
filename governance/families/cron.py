"""Refresh schedules are cron expressions, read by APScheduler's own parser."""

from __future__ import annotations

from governance.errors import InvalidInput


def validate_cron(expression: str, timezone: str = "UTC"):
    """Return APScheduler's trigger for a five-field cron expression, or refuse it (422)."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expression, timezone=timezone)
    except ValueError as exc:
        raise InvalidInput(
            f"refresh_schedule {expression!r} is not a valid cron expression: {exc}",
            details={"field": "refresh_schedule"},
        ) from exc
