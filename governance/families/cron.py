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


MONTHS = (
    "January February March April May June July August September October November December"
).split()
DAYS = "Sunday Monday Tuesday Wednesday Thursday Friday Saturday".split()


def describe_cron(expression: str) -> str:
    """A schedule in words, for the common shapes (single values or `*` in each field):
    `0 6 15 1 *` is "every year on 15 January at 06:00 UTC". Anything else (ranges, steps,
    lists) is shown as the expression itself, which says it exactly."""
    fields = expression.split()
    if len(fields) != 5 or not all(f == "*" or f.isdigit() for f in fields):
        return f"cron {expression} (UTC)"
    minute, hour, day, month, weekday = fields
    if minute == "*" or hour == "*":
        return f"cron {expression} (UTC)"
    at = f"at {int(hour):02d}:{int(minute):02d} UTC"
    if day == "*" and month == "*" and weekday == "*":
        return f"every day {at}"
    if day == "*" and month == "*" and 0 <= int(weekday) <= 7:
        return f"every {DAYS[int(weekday) % 7]} {at}"
    if weekday != "*":
        return f"cron {expression} (UTC)"
    if month == "*":
        return f"on day {int(day)} of every month {at}"
    if day != "*" and 1 <= int(month) <= 12:
        return f"every year on {int(day)} {MONTHS[int(month) - 1]} {at}"
    return f"cron {expression} (UTC)"
