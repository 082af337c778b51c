"""The review report's periods (plugin/flow/report/period.py): days and ISO weeks of a time
zone as naive-UTC ranges, their names, and what a mistyped date says; and the `reports:`
config section's checks at load."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from plugin import config
from plugin.config import ConfigError
from plugin.flow.report.period import Period, PeriodError, containing, last_complete, parse_day, parse_week, period_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def test_a_day_of_shanghai_is_16_to_16_utc():
    p = period_of("daily", "2026-11-24", SHANGHAI)
    assert (p.start, p.end) == (datetime(2026, 11, 23, 16), datetime(2026, 11, 24, 16))
    assert p.key == "2026-11-24" and p.label == "2026-11-24 (Tue)" and p.path == "/reports/day/2026-11-24"
    assert p.previous().key == "2026-11-23" and p.next().key == "2026-11-25"
    # The edges: 23:59:59 on the 23rd is the day before, midnight on the 24th is this day.
    assert p.local_day(datetime(2026, 11, 23, 15, 59, 59)) == date(2026, 11, 23)
    assert p.local_day(datetime(2026, 11, 23, 16, 0)) == date(2026, 11, 24)


def test_days_with_a_daylight_saving_change_are_23_and_25_hours():
    spring, autumn = period_of("daily", "2026-03-08", NEW_YORK), period_of("daily", "2026-11-01", NEW_YORK)
    assert (spring.end - spring.start).total_seconds() == 23 * 3600
    assert (autumn.end - autumn.start).total_seconds() == 25 * 3600
    assert spring.start == datetime(2026, 3, 8, 5) and autumn.start == datetime(2026, 11, 1, 4)


def test_weeks_are_iso_weeks_monday_to_sunday():
    for text in ("2026-W48", "2026-w48", "2026-11-23", "2026-11-26", "2026-11-29"):
        assert parse_week(text) == date(2026, 11, 23), text
    w = period_of("weekly", "2026-11-25", SHANGHAI)
    assert w.key == "2026-W48" and w.last == date(2026, 11, 29) and len(w.days) == 7
    assert (w.start, w.end) == (datetime(2026, 11, 22, 16), datetime(2026, 11, 29, 16))
    assert w.previous().key == "2026-W47" and w.path == "/reports/week/2026-11-23"
    assert period_of("weekly", "2027-01-01", SHANGHAI).key == "2026-W53"  # ISO years


@pytest.mark.parametrize("text,said", [
    ("2026-13-01", "'2026-13-01' is not a date: month must be in 1..12"),
    ("2026-02-30", "'2026-02-30' is not a date: day is out of range for month"),
    ("24/11/2026", "'24/11/2026' is not a date: write YYYY-MM-DD, e.g. 2026-11-24"),
    ("0001-01-01", "'0001-01-01' is out of range: years 2000 to 2999"),
    ("２０２６-11-24", "is not a date: write YYYY-MM-DD"),
])
def test_a_bad_day_says_what_is_wrong(text, said):
    with pytest.raises(PeriodError) as err:
        parse_day(text)
    assert said in str(err.value) and "\n" not in str(err.value)


def test_a_bad_week_says_what_is_wrong():
    with pytest.raises(PeriodError, match="2026 has no week 60"):
        parse_week("2026-W60")
    with pytest.raises(PeriodError, match=r"is not a week: write YYYY-Www \(e.g. 2026-W48\)"):
        parse_week("week 48")


def test_yesterday_and_last_week_in_the_zone():
    # 2026-11-24 02:02 UTC is 10:02 on Tuesday the 24th in Shanghai, still Monday the 23rd in New York.
    now = datetime(2026, 11, 24, 2, 2)
    assert last_complete("daily", now, SHANGHAI).key == "2026-11-23"
    assert last_complete("daily", now, NEW_YORK).key == "2026-11-22"
    assert last_complete("weekly", now, SHANGHAI).key == "2026-W47"
    assert containing("weekly", now, SHANGHAI) == Period("weekly", date(2026, 11, 23), SHANGHAI)


# --- the config section ------------------------------------------------------------------

def test_reports_config_defaults_and_kinds_keep_their_schedules():
    cfg = config.from_dict({"reports": {"timezone": "Asia/Shanghai", "daily": {"sinks": []}}})
    r = cfg.reports
    assert r.daily.schedule == "0 8 * * *" and r.weekly.schedule == "0 8 * * 1"
    assert r.negative_emotions == ["angry", "disgusted", "fearful", "sad"] and r.max_rows == 20


@pytest.mark.parametrize("section,said", [
    ({"timezone": "Mars/Olympus"}, "reports.timezone: unknown time zone 'Mars/Olympus' (an IANA name"),
    ({"negative_emotions": ["angry", "grumpy"]}, "reports.negative_emotions: unknown emotion 'grumpy' (known: angry,"),
    ({"negative_emotions": []}, "reports.negative_emotions: List should have at least 1 item"),
    ({"daily": {"schedule": "0 8 * *"}}, "reports.daily.schedule: '0 8 * *' is not a cron schedule"),
    ({"weekly": {"sinks": ["crm"]}}, "reports.weekly.sinks: 'crm' is a rest sink; the report goes to WeCom robots "
                                     "(type wecom_robot)"),
    ({"daily": {"sinks": ["wecom2"]}}, "reports.daily.sinks: 'wecom2' is not under sinks: (configured: crm, wecom)"),
    ({"daily": {"sink": ["wecom"]}}, "reports.daily.sink: unknown key"),
])
def test_reports_config_errors_name_the_key(section, said):
    sinks = {"crm": {"type": "rest", "url": "https://crm.example.com/x"},
             "wecom": {"type": "wecom_robot", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"}}
    with pytest.raises(ConfigError) as err:
        config.from_dict({"sinks": sinks, "reports": section}, "c.yaml")
    assert said in str(err.value) and str(err.value).startswith("c.yaml: ") and "\n" not in str(err.value)
