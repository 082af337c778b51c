"""The review report's forms from numbers made by hand (plugin/flow/report/render.py) and
the robot's report messages (connectors/sinks/wecom_robot.report_messages): hostile values
escaped in markdown and CSV, the 4096-byte cap kept with the link last, the trial line
first, the chart a PNG under 2 MB."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from connectors.sinks.wecom_robot import MAX_BYTES, MAX_IMAGE_BYTES, PNG_SIGNATURE, report_messages
from plugin.core import trial
from plugin.flow.report import render
from plugin.flow.report.measures import AlertGroup, DayShare, FlaggedCustomer, Review, ShareRow, Speech, Tally, Volume
from plugin.flow.report.period import Period

DAY = Period("daily", date(2026, 11, 24), ZoneInfo("Asia/Shanghai"))
PAGE = "https://callmood.example.com/reports/day/2026-11-24"
HOSTILE = "<script>alert(1)</script>"


def link(call_id: int) -> str:
    return f"https://callmood.example.com/calls/{call_id}?k=signed"


def review(customers: int = 2, period: Period = DAY, is_trial: bool = False, **kw) -> Review:
    rows = [ShareRow("support", 10, Speech(4, 10), 8, Speech(1, 8)), ShareRow(HOSTILE, 6, Speech(3, 6)),
            ShareRow(None, 5, Speech(0, 5))]
    flagged = [FlaggedCustomer(f"=cust-{i}", 3, 1, "critical", f"angry [x](http://evil) #{i} @all <@all>", 100 + i,
                               datetime(2026, 11, 24, 3)) for i in range(customers)]
    parts = dict(period=period, negative_emotions=("angry", "sad"), now=Volume(21, 1, 3600.0, Speech(7, 21)),
                 prev=Volume(8, 0, 1800.0, Speech(1, 8)), queues=rows, agents=[ShareRow("+agent", 21, Speech(7, 21))],
                 scenarios=rows[:1], customers=flagged, severities=[AlertGroup("critical", Tally(3, 1, 1))],
                 rules=[AlertGroup("general/angry", Tally(3, 1, 1), Tally(2, 2, 0))],
                 alerts=AlertGroup("all", Tally(3, 1, 1), Tally(2, 2, 0)), trial=is_trial, zone="Asia/Shanghai")
    parts.update(kw)
    return Review(**parts)


def test_shares_changes_and_precision_in_words():
    row = ShareRow("q", 10, Speech(4, 10), 8, Speech(1, 8))
    assert row.share == 0.4 and row.prev_share == 0.125 and render.pp(row.change_pp) == "+27.5 pp"
    assert ShareRow("q", 1, Speech(0, 0)).share is None and render.pct(None) == "—"
    assert Tally(4, 1, 1).precision == 0.5 and Tally(4, 1, 1).unlabelled == 2 and Tally(4).precision is None
    assert render.delta(3, 5) == "-2" and render.delta(5, 5) == "+0"


def test_markdown_escapes_every_value_from_data():
    text = render.markdown(review(), PAGE, link, min_calls=5)
    assert text.startswith("### 情绪复盘报告 / Emotion review\n")
    assert "<script>" not in text and "＜script＞alert(1)＜/script＞" in text
    assert "<@all>" not in text and "＜@all＞" in text and "［x］(http://evil)" in text and "＃0" in text
    assert "[查看 / Open](https://callmood.example.com/calls/100?k=signed)" in text
    assert text.endswith(f"[完整报告 / Full report]({PAGE})")
    # The worst queues by share, with enough calls: the hostile one (50%) first, then support (40%).
    assert text.index("＜script＞") < text.index("support") and "(none) 未指定 · " in text


def test_markdown_keeps_to_4096_bytes_with_the_link_last():
    text = render.markdown(review(customers=100), PAGE, link, min_calls=1)
    assert len(text.encode("utf-8")) <= MAX_BYTES and text.endswith(f"({PAGE})")
    assert "另有" in text and "and" in text  # the customers that did not fit are counted


def test_trial_is_said_first_in_every_form():
    r = review(is_trial=True)
    assert render.markdown(r, PAGE, link, 5).splitlines()[0] == trial.LABEL
    assert render.text(r).splitlines()[0] == trial.LABEL
    rows = list(csv.DictReader(io.StringIO(render.csv_bytes(r).decode("utf-8-sig"))))
    assert (rows[0]["section"], rows[0]["name"]) == ("trial", trial.LABEL)
    assert trial.LABEL not in render.text(review())


def test_csv_has_a_bom_and_no_formula_runs():
    data = render.csv_bytes(review())
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert list(rows[0]) == render.COLUMNS
    by = {(r["section"], r["name"]) for r in rows}
    assert ("customer", "'=cust-0") in by and ("agent", "'+agent") in by and ("queue", HOSTILE) in by
    assert ("queue", "(none)") in by and ("total", "all") in by and ("rule", "general/angry") in by
    total = next(r for r in rows if r["section"] == "total")
    assert total["negative_share"] == "0.3333" and total["change_pp"] == "20.8333" and total["precision"] == "0.5"
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert render.csv_cell(cell) == "'" + cell
    assert render.csv_cell(-2.5) == -2.5 and render.csv_cell("ok") == "ok" and render.csv_cell(None) == ""


def test_text_tables_line_up():
    out = render.text(review())
    assert "Calls analysed 分析通话" in out and "33.3%" in out and "+20.8 pp" in out
    assert "(none) 未指定" in out and HOSTILE in out and "=cust-0" in out


def test_chart_is_a_png_under_2_mb_with_hostile_and_mathtext_labels():
    week = Period("weekly", date(2026, 11, 23), DAY.tz)
    days = [DayShare(d, 3, Speech(1, 4)) for d in week.days[:3]] + [DayShare(d, 0, Speech()) for d in week.days[3:]]
    weird = [ShareRow(f"$\\frac{{{i}}}$ 队列{i}", 30 - i, Speech(i, 30)) for i in range(25)]
    png = render.chart_png(review(period=week, days=days, queues=weird, agents=weird, is_trial=True))
    assert png.startswith(PNG_SIGNATURE) and len(png) < MAX_IMAGE_BYTES


def test_the_robot_gets_markdown_then_the_image_with_its_md5():
    png = render.chart_png(review())
    markdown, image = report_messages("x" * 5000, png)
    assert markdown["body"]["msgtype"] == "markdown" and len(markdown["body"]["markdown"]["content"].encode()) <= 4096
    raw = base64.b64decode(image["body"]["image"]["base64"])
    assert image["body"]["msgtype"] == "image" and raw == png
    assert image["body"]["image"]["md5"] == hashlib.md5(png).hexdigest()
    assert len(report_messages("x", None)) == 1
    with pytest.raises(ValueError, match="not a PNG"):
        report_messages("x", b"GIF89a")
    with pytest.raises(ValueError, match="the robot takes at most 2097152"):
        report_messages("x", PNG_SIGNATURE + b"\0" * MAX_IMAGE_BYTES)
