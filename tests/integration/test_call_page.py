"""The call page (issue 14, first part), on SQLite and PostgreSQL: the emotion timeline
(a lane per speaker, colour by emotion, strength by confidence, the windows a rule used
outlined, the scores on hover or focus), the recording served with HTTP range requests
from the kept copy or fetched from the source on demand, supervisors' verdict buttons and
the re-run button. (That a click moves the player is checked in a browser: next part.)"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from plugin.core import files
from plugin.core.clock import ManualClock
from plugin.store.tables import AlertRow, Call, Feedback, Job, Segment
from tests.conftest import authed, in_language, make_config
from tests.helpers import make_audio

NOW = datetime(2026, 11, 24, 4, 0)
SCORES = {"angry": 0.81, "neutral": 0.1, "sad": 0.05, "happy": 0.01, "fearful": 0.01, "disgusted": 0.01,
          "surprised": 0.005, "other": 0.003, "unknown": 0.002}


@pytest.fixture
def site(tmp_path, db_url, app_factory):
    return app_factory(make_config(tmp_path, None, db_url), clock=ManualClock(NOW))


def stored_call(svc, url: str = "http://127.0.0.1:9/gone.wav", status: str = "analyzed") -> tuple[int, int]:
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id=f"page-{url}-{status}", recording_url=url, customer_id="cust-7",
                    agent_id="agent-7", event={"call_id": "page", "recording_url": url}, status=status,
                    received_at=NOW, duration_s=9.0, channel_roles={"0": "agent", "1": "customer"})
        s.add(call)
        s.flush()
        for i, (role, ch, label, conf) in enumerate([("agent", 0, "neutral", 0.6), ("customer", 1, "angry", 0.81),
                                                     ("customer", 1, "angry", 0.3)]):
            s.add(Segment(call_id=call.id, channel=ch, role=role, start=3.0 * i, end=3.0 * i + 3, label=label,
                          confidence=conf, scores=SCORES))
        alert = AlertRow(call_id=call.id, rule="angry_customer", scenario="general", severity="warning",
                         role="customer", emotions=["angry"], share=0.66, confidence=0.81, matched=[[3.0, 6.0]],
                         summary="客户生气 <b>angry</b>", customer_id="cust-7", created_at=NOW, routing=[],
                         details={"share": 0.66, "segments": 1})
        s.add(alert)
        s.flush()
        return call.id, alert.id


def test_the_timeline_has_a_lane_per_speaker_and_outlines_what_a_rule_used(site):
    svc, admin = site
    call_id, _ = stored_call(svc)
    page = in_language(admin, "en").get(f"/calls/{call_id}").text
    assert page.index('aria-label="customer"') < page.index('aria-label="agent"')  # the customer first
    rects = re.findall(r"<rect [^>]*data-start=[^>]*>.*?</rect>", page, re.S)  # not the legend's swatches
    assert len(rects) == 3 and all('tabindex="0"' in r for r in rects)
    used = [r for r in rects if 'class="used"' in r]
    assert len(used) == 1 and 'data-start="3.0"' in used[0] and "used by a rule" in used[0]
    strong, weak = (r for r in rects if 'fill="#c62828"' in r)  # angry, at 0.81 and 0.3
    assert float(strong.split('fill-opacity="')[1].split('"')[0]) > float(weak.split('fill-opacity="')[1].split('"')[0])
    assert "angry 0.81, neutral 0.10, sad 0.05" in rects[1]  # the nine scores, on hover or focus
    assert '<audio id="recording"' in page and f'src="/calls/{call_id}/audio"' in page
    assert '<script src="/static/call.js" defer></script>' in page
    assert "&lt;b&gt;angry&lt;/b&gt;" in page and 'data-start="3.0">00:03–00:06</button>' in page
    # In Chinese the same boxes: the roles and emotions by their Chinese names (FunASR's), the codes kept.
    zh = in_language(admin, "zh-CN").get(f"/calls/{call_id}").text
    assert zh.index('aria-label="客户"') < zh.index('aria-label="坐席"')
    assert "生气 0.81, 中立 0.10, 难过 0.05" in zh and "规则命中" in zh and 'fill="#c62828"' in zh


def test_the_recording_is_served_with_range_requests_from_the_kept_copy(site, tmp_path):
    svc, admin = site
    call_id, _ = stored_call(svc)
    files.data_subdir(svc.config.data_dir, files.RECORDINGS)
    shutil.copyfile(make_audio(tmp_path / "kept", "mp3", 8000, 2, 9.0), files.recording_copy(svc.config.data_dir,
                                                                                              call_id))
    whole = admin.get(f"/calls/{call_id}/audio")
    assert whole.status_code == 200 and whole.mimetype == "audio/wav" and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.data[:4] == b"RIFF" and len(whole.data) > 9 * 16000 * 2 * 2 * 0.9  # 16 kHz, both channels
    part = admin.get(f"/calls/{call_id}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == whole.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.data)}"

    # A supervisor's phone, by the alert's signed link: the page and its recording, no login.
    link = urlsplit(svc.links.call(call_id))
    phone = in_language(admin.application.test_client(), "en")
    page = phone.get(f"{link.path}?{link.query}").text
    assert f"/calls/{call_id}/audio?{link.query}" in page
    assert phone.get(f"/calls/{call_id}/audio?{link.query}").status_code == 200
    assert phone.get(f"/calls/{call_id}/audio").status_code in (302, 401)  # no key, no login: no recording
    assert ">Correct</button>" not in page and 'name="verdict"' not in page  # a link is read-only


def test_without_a_kept_copy_the_recording_is_fetched_from_the_source(site, tmp_path, recordings):
    svc, admin = site
    url = recordings.serve_file("/rec/page.wav", make_audio(tmp_path / "src", "wav_pcm", 8000, 1, 4.0))
    call_id, _ = stored_call(svc, url)
    r = admin.get(f"/calls/{call_id}/audio")
    assert r.status_code == 200 and r.data[:4] == b"RIFF"
    assert len(recordings.requests) == 1
    assert admin.get(f"/calls/{call_id}/audio").status_code == 200 and len(recordings.requests) == 1  # kept a day
    gone, _ = stored_call(svc, "http://127.0.0.1:9/nothing.wav", status="failed")
    r = admin.get(f"/calls/{gone}/audio")
    assert r.status_code == 404 and "could not be fetched" in r.text


def test_supervisors_give_verdicts_on_the_page_and_rerun_failed_calls(site):
    svc, admin = site
    call_id, alert_id = stored_call(svc)
    supervisor = in_language(authed(admin.application, "supervisor"), "en")
    page = supervisor.get(f"/calls/{call_id}").text
    assert ">Correct</button>" in page and ">False alarm</button>" in page
    r = supervisor.post(f"/calls/{call_id}/alerts/{alert_id}/feedback", data={"verdict": "false_alarm",
                                                                             "note": "客户在开玩笑"})
    assert r.status_code == 302 and r.location.endswith(f"/calls/{call_id}#alert-{alert_id}")
    with svc.sessions() as s:
        fb = s.execute(select(Feedback).where(Feedback.alert_id == alert_id)).scalar_one()
        assert (fb.verdict, fb.note) == ("false_alarm", "客户在开玩笑") and fb.by.startswith("test-supervisor")
    assert "False alarm</b> by test-supervisor" in supervisor.get(f"/calls/{call_id}").text
    assert supervisor.post(f"/calls/{call_id}/alerts/{alert_id}/feedback", data={"verdict": "maybe"}).status_code == 400
    other, _ = stored_call(svc, "http://127.0.0.1:9/other.wav")
    assert supervisor.post(f"/calls/{other}/alerts/{alert_id}/feedback",
                           data={"verdict": "correct"}).status_code == 404
    viewer = in_language(authed(admin.application, "viewer"), "en")
    assert ">Correct</button>" not in viewer.get(f"/calls/{call_id}").text
    assert viewer.post(f"/calls/{call_id}/alerts/{alert_id}/feedback", data={"verdict": "correct"}).status_code == 403

    failed, _ = stored_call(svc, "http://127.0.0.1:9/failed.wav", status="failed")
    with svc.sessions.begin() as s:
        s.add(Job(call_id=failed, status="failed", attempts=5, last_error="HTTP 404", created_at=NOW, run_after=NOW,
                  finished_at=NOW))
    assert "Re-run this call" in supervisor.get(f"/calls/{failed}").text
    assert "Re-run this call" not in supervisor.get(f"/calls/{call_id}").text
    r = supervisor.post(f"/calls/{failed}/rerun")
    assert r.status_code == 302 and f"Call {failed} queued for analysis again" in supervisor.get(r.location).text


def test_preparing_a_recording_is_bounded_remembered_and_never_for_a_purged_call(site, recordings):
    from plugin.flow import listen
    from tests.helpers import Reply

    svc, admin = site
    recordings.routes["/rec/broken.wav"] = Reply(500, "storage down")
    broken, _ = stored_call(svc, recordings.url + "/rec/broken.wav")
    assert admin.get(f"/calls/{broken}/audio").status_code == 404
    assert admin.get(f"/calls/{broken}/audio").status_code == 404
    assert len(recordings.requests) == 1  # the failure is remembered: no download on every view

    other, _ = stored_call(svc, recordings.url + "/rec/other.wav")
    listen._making.acquire()  # another recording is being prepared
    try:
        r = admin.get(f"/calls/{other}/audio")
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    finally:
        listen._making.release()

    purged, _ = stored_call(svc, recordings.url + "/rec/purged.wav")
    with svc.sessions.begin() as s:
        s.get(Call, purged).summary = {"purged": {"event": "2026-11-20"}}
    r = admin.get(f"/calls/{purged}/audio")
    assert r.status_code == 404 and "retention removed" in r.text and len(recordings.requests) == 1


# --- what was said (transcripts) ---------------------------------------------------------

HOSTILE_WORDS = "<script>alert(1)</script> <b>退款</b> {{ 7*7 }} 打13812345678 \u202e"
QUOTE = {"start": 3.0, "end": 6.0, "role": "customer", "text": "我要退款 <img src=x onerror=alert(1)> 13912345678"}


def transcribed_call(svc) -> tuple[int, int]:
    """stored_call's segments with what SenseVoice heard: words (hostile), none heard, and a
    segment from before transcripts (None); its alert with a quote."""
    call_id, alert_id = stored_call(svc, url="http://127.0.0.1:9/said.wav")
    with svc.sessions.begin() as s:
        segs = s.execute(select(Segment).where(Segment.call_id == call_id).order_by(Segment.start)).scalars().all()
        segs[0].text, segs[0].language, segs[0].tag_emotion, segs[0].events = "您好，这里是客服", "zh", "neutral", []
        segs[1].text, segs[1].language, segs[1].tag_emotion, segs[1].events = (HOSTILE_WORDS, "yue", "angry",
                                                                               ["laughter", "cough"])
        segs[1].normalized = "not shown"
        segs[2].text, segs[2].language, segs[2].events = "", "nospeech", []
        alert = s.get(AlertRow, alert_id)
        alert.details = {**alert.details, "quotes": [QUOTE]}
    return call_id, alert_id


def test_the_page_shows_what_was_said_beside_the_timeline(site):
    svc, admin = site
    call_id, _ = transcribed_call(svc)
    page = in_language(admin, "en").get(f"/calls/{call_id}").text
    said = page.split('<h2 id="transcript">', 1)[1].split("<h2>", 1)[0]
    assert page.index('class="timeline"') < page.index('id="transcript"') < page.index(">Alerts</h2>")
    rows = re.findall(r'<tr class="said" data-start="([^"]+)">(.*?)</tr>', said, re.S)
    assert [r[0] for r in rows] == ["0.0", "3.0", "6.0"]
    assert 'data-start="3.0">00:03</button>' in rows[1][1] and "customer" in rows[1][1] and "angry" in rows[1][1]
    # the words as text, never markup or a template
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;退款&lt;/b&gt;" in said
    assert "{{ 7*7 }}" in said and "49" not in said and "打13812345678" in said  # a supervisor sees it whole
    assert "SenseVoice: Cantonese · angry · laughter · cough" in said
    assert "(no words)" in rows[2][1] and "not shown" not in page  # normalized is no page's business
    quotes = page.split('<ul class="quotes"', 1)[1].split("</ul>", 1)[0]
    assert 'data-start="3.0">00:03</button> customer: <q>我要退款 &lt;img src=x onerror=alert(1)&gt; 13912345678</q>' \
        in quotes
    assert "quotes" not in page.split('class="alert"', 1)[1].split("<small>", 2)[1].split("</small>")[0]  # not a detail
    zh = in_language(admin, "zh-CN").get(f"/calls/{call_id}").text
    assert "SenseVoice: 粤语 · 生气 · 笑声 · 咳嗽" in zh and "原话" in zh


def test_a_call_without_transcripts_has_no_transcript(site):
    svc, admin = site
    call_id, _ = stored_call(svc)
    page = in_language(admin, "en").get(f"/calls/{call_id}").text
    assert 'id="transcript"' not in page and 'class="quotes"' not in page


def test_the_api_gives_the_words_and_quotes_and_viewers_see_numbers_masked(site):
    svc, admin = site
    call_id, alert_id = transcribed_call(svc)
    got = admin.get(f"/api/calls/{call_id}").json
    seg = got["segments"][1]
    assert (seg["text"], seg["language"], seg["tag_emotion"], seg["events"]) == (
        HOSTILE_WORDS, "yue", "angry", ["laughter", "cough"])
    assert "normalized" not in seg and got["segments"][0]["events"] == []
    [alert] = got["alerts"]
    assert alert["quotes"] == [QUOTE] and alert["details"] == {"share": 0.66, "segments": 1}
    assert admin.get(f"/api/alerts/{alert_id}").json["quotes"] == [QUOTE]
    viewer = in_language(authed(admin.application, "viewer"), "en")
    seen = viewer.get(f"/api/calls/{call_id}").json
    assert "13812345678" not in str(seen) and "13912345678" not in str(seen)
    assert seen["segments"][1]["text"].startswith("<script>alert(1)</script> <b>退款</b>")  # the words stay
    assert seen["alerts"][0]["quotes"][0]["text"].startswith("我要退款 <img")
    assert "13912345678" not in viewer.get(f"/api/alerts/{alert_id}").text
    page = viewer.get(f"/calls/{call_id}").text
    assert "13812345678" not in page and "13912345678" not in page and "我要退款" in page
    # Numbers beside Chinese characters, and read out in Chinese digits, are found too.
    from plugin.web.auth.redact import mask_words
    assert mask_words("打13812345678，身份证110101199003071234，卡号幺三八一二三四五六七八") == \
        "打*******5678，身份证**************1234，卡号*******五六七八"
