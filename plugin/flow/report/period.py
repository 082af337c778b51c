"""The periods a review report covers: a calendar day, or an ISO week (Monday to Sunday), in
``reports.timezone``. The database keeps naive UTC, so each period is also a half-open
[start, end) range of naive-UTC datetimes; a day of a zone with daylight saving may be 23
or 25 hours long, and that is what it covers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

Kind = Literal["daily", "weekly"]
KINDS: tuple[Kind, ...] = ("daily", "weekly")
# The URL word of each kind (/reports/day/2026-11-24, /reports/week/2026-11-23).
URL_WORD = {"daily": "day", "weekly": "week"}

# Dates outside these years are typos, and date arithmetic near year 1 or 9999 overflows.
FIRST_YEAR, LAST_YEAR = 2000, 2999
_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")  # \d would take other scripts' digits
_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})", re.IGNORECASE)


class PeriodError(ValueError):
    """A date or week that cannot name a period, in words."""


def zone(name: str | None) -> tzinfo:
    """``reports.timezone``; None: the machine's zone, the one crontab (and APScheduler) read
    the schedules in."""
    if name:
        return ZoneInfo(name)
    import tzlocal  # APScheduler's own dependency, asked only when no zone is configured

    return tzlocal.get_localzone()


def zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


@dataclass(frozen=True)
class Period:
    kind: Kind
    first: date  # the day, or the week's Monday
    tz: tzinfo

    @property
    def last(self) -> date:
        return self.first + timedelta(days=self.length - 1)

    @property
    def length(self) -> int:
        return 1 if self.kind == "daily" else 7

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.length)]

    @property
    def start(self) -> datetime:
        """Where the period begins, naive UTC (as the database keeps times)."""
        return utc_of(self.first, self.tz)

    @property
    def end(self) -> datetime:
        """Where the next period begins, naive UTC (not included)."""
        return utc_of(self.first + timedelta(days=self.length), self.tz)

    def previous(self) -> Period:
        return Period(self.kind, self.first - timedelta(days=self.length), self.tz)

    def next(self) -> Period:
        return Period(self.kind, self.first + timedelta(days=self.length), self.tz)

    @property
    def key(self) -> str:
        """What names it in delivery keys and the CLI: 2026-11-24, or 2026-W48."""
        if self.kind == "daily":
            return self.first.isoformat()
        year, week, _ = self.first.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def label(self) -> str:
        """What people read: "2026-11-24 (Tue)", or "2026-W48 (2026-11-23 – 2026-11-29)"."""
        if self.kind == "daily":
            return f"{self.first.isoformat()} ({self.first.strftime('%a')})"
        return f"{self.key} ({self.first.isoformat()} – {self.last.isoformat()})"

    @property
    def path(self) -> str:
        """The HTML page's path (under server.public_url)."""
        return f"/reports/{URL_WORD[self.kind]}/{self.first.isoformat()}"

    def local_day(self, t: datetime) -> date:
        """The day (in the period's zone) of a naive-UTC time."""
        return t.replace(tzinfo=timezone.utc).astimezone(self.tz).date()


def utc_of(day: date, tz: tzinfo) -> datetime:
    """Midnight at the start of ``day`` in ``tz``, as naive UTC."""
    local = datetime.combine(day, time(0), tzinfo=tz)
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def parse_day(text: str) -> date:
    """YYYY-MM-DD, or PeriodError saying what is wrong."""
    m = _DAY.fullmatch(text.strip())
    if not m:
        raise PeriodError(f"{text!r} is not a date: write YYYY-MM-DD, e.g. 2026-11-24")
    try:
        day = date(*(int(g) for g in m.groups()))
    except ValueError as exc:
        raise PeriodError(f"{text!r} is not a date: {exc}") from None
    return _in_range(day, text)


def parse_week(text: str) -> date:
    """The Monday of YYYY-Www (ISO week) or of the week holding the date YYYY-MM-DD."""
    m = _WEEK.fullmatch(text.strip())
    if not m:
        try:
            day = parse_day(text)
        except PeriodError:
            raise PeriodError(f"{text!r} is not a week: write YYYY-Www (e.g. 2026-W48) or a date in it "
                              f"(YYYY-MM-DD)") from None
        return day - timedelta(days=day.weekday())
    try:
        monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise PeriodError(f"{text!r} is not a week: {m.group(1)} has no week {int(m.group(2))}") from None
    return _in_range(monday, text)


def _in_range(day: date, text: str) -> date:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise PeriodError(f"{text!r} is out of range: years {FIRST_YEAR} to {LAST_YEAR}")
    return day


def period_of(kind: Kind, text: str, tz: tzinfo) -> Period:
    """The period ``text`` names (a date; for a week also YYYY-Www)."""
    first = parse_day(text) if kind == "daily" else parse_week(text)
    return Period(kind, first, tz)


def containing(kind: Kind, now_utc: datetime, tz: tzinfo) -> Period:
    """The period that holds the naive-UTC time ``now_utc``."""
    today = now_utc.replace(tzinfo=timezone.utc).astimezone(tz).date()
    first = today if kind == "daily" else today - timedelta(days=today.weekday())
    return Period(kind, first, tz)


def last_complete(kind: Kind, now_utc: datetime, tz: tzinfo) -> Period:
    """The period before the one holding ``now_utc``: yesterday, or last week."""
    return containing(kind, now_utc, tz).previous()
