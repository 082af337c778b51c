"""Cron schedules as operators write them in crontab, for APScheduler: ``imports.schedule``
and ``sources.<name>.sync_schedule``.

"0 2 * * *" is 02:00 every day in the machine's local time zone (as crontab: in a container
usually UTC; the TZ variable changes it). A ``CRON_TZ=<IANA zone>`` prefix, as cronie
writes it, names the zone: "CRON_TZ=Asia/Shanghai 0 2 * * *".

The day of the week is crontab's: 0 and 7 are Sunday. APScheduler 3's
``CronTrigger.from_crontab`` reads 0 as Monday (its own numbering; agronholm/apscheduler
issue #286), so "0 2 * * 1-5" would also run on Saturdays: numbers in that field are
rewritten as day names before APScheduler sees them. One difference stays: with both
the day of the month and the weekday restricted, crontab runs on either, APScheduler on
days that match both.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's 0-6 (7 is Sunday too)
TZ_PREFIX = "CRON_TZ="


def cron_trigger(text: str) -> CronTrigger:
    """The trigger for a crontab line (five fields, optionally after CRON_TZ=<zone>);
    ValueError saying what is wrong."""
    text = " ".join(text.split())
    zone = None
    if text.startswith(TZ_PREFIX):
        name, _, text = text[len(TZ_PREFIX):].partition(" ")
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} after CRON_TZ= (e.g. Asia/Shanghai, UTC)") from None
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"{text!r} is not a cron schedule: five fields (minute hour day month weekday), "
                         f"e.g. \"0 2 * * *\" for 02:00 every day")
    fields[4] = _weekdays(fields[4])
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=zone)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a cron schedule: {exc}") from None


def cron_problem(text: str) -> str | None:
    """Why ``text`` is not a schedule cron_trigger reads, or None (for config validators)."""
    try:
        cron_trigger(text)
    except ValueError as exc:
        return str(exc)
    return None


def _weekdays(field: str) -> str:
    """crontab's weekday field as a list of day names APScheduler reads the same way."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, "weekday step") if step_text else 1
        if span == "*":
            lo, hi = 0, 6
        else:
            first, _, last = span.partition("-")
            lo = _day(first)
            hi = _day(last) if last else (6 if step_text else lo)
        if step < 1 or lo > hi:
            raise ValueError(f"weekday {part!r} is not a range crontab reads")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(DAYS[d] for d in sorted(days))


def _day(text: str) -> int:
    if text.lower()[:3] in DAYS and len(text) == 3:
        return DAYS.index(text.lower())
    day = _number(text, "weekday")
    if day > 7:
        raise ValueError(f"weekday {text!r} must be 0-7 (0 and 7: Sunday) or a name (sun, mon...)")
    return day


def _number(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{what} {text!r} must be a number or a day name (sun, mon...)")
    return int(text)
