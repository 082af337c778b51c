"""The upload page (GET /upload) and its endpoint (POST /upload/analyze): a login (viewer or
above), a CSRF token on a session's uploads, results with segments, timeline, scenario
verdict and CSV rows for real WAV and MP3 files made here, clear errors for bad files, the
size limit, /predict's queue shared, nothing kept, and the tutorial's /predict answer as
it was. Flask's test client, the shared random-weight model, SQLite."""

from __future__ import annotations

import csv
import io
from io import BytesIO

import pytest
from sqlalchemy import func, select

from plugin.core import files
from plugin.store.tables import Call
from plugin.web.predict import POOL
from plugin.web.upload_page import CSV_COLUMNS, LAYOUTS
from tests.conftest import authed, make_config
from tests.helpers import make_audio
from tests.integration.test_auth import add_user, login

SECOND = """scenario: quiet
description: A second scenario, so the page lists more than one
rules:
  - name: never
    when: {role: agent, emotions: [angry], min_confidence: 1.0, min_share: 1.0}
"""


@pytest.fixture
def site(tmp_path, model_dir, sqlite_url, rules_dir, app_factory):
    """(services, an admin's token client) of an app whose model is loaded; the rules: the
    test rule (scenario ``everything``, fires on any emotion) and ``quiet`` (never fires)."""
    (rules_dir / "quiet.yaml").write_text(SECOND, encoding="utf-8")
    return app_factory(make_config(tmp_path, model_dir, sqlite_url, rules={"path": str(rules_dir)}), model=True)


def send(client, content: bytes, name: str = "call.wav", **fields):
    data = {"file": (BytesIO(content), name), **fields}
    return client.post("/upload/analyze", data=data, content_type="multipart/form-data")


def wav(tmp_path, name: str = "call", channels: int = 1, seconds: float = 7.0) -> bytes:
    return make_audio(tmp_path / name, "wav_pcm", 16000, channels, seconds).read_bytes()


def test_the_page_needs_a_login_and_offers_the_scenarios_in_force(site):
    svc, admin = site
    anon = admin.application.test_client()
    r = anon.get("/upload")
    assert r.status_code == 302 and r.location.startswith("/login?next=")
    assert anon.post("/upload/analyze", data={}, content_type="multipart/form-data").status_code == 401
    viewer = authed(admin.application, "viewer")  # the least role: whoever reads calls may try a file
    page = viewer.get("/upload?lang=en")
    assert page.status_code == 200
    html = page.text
    for scenario in ("everything", "quiet"):
        assert f'<option value="{scenario}">' in html
    for layout in LAYOUTS:
        assert f'<option value="{layout}">' in html
    assert 'for="upload-files"' in html and 'id="upload-files"' in html and "multiple" in html
    assert 'name="csrf_token"' in html and "upload.js" in html and 'http-equiv="refresh"' not in html
    assert 'href="/upload"' in html  # the nav's link
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_a_session_upload_needs_the_csrf_token(site, tmp_path):
    svc, admin = site
    add_user(svc, "vi", "viewer")
    browser = admin.application.test_client()
    login(browser, "vi")
    content = wav(tmp_path)
    r = send(browser, content)
    assert r.status_code == 400 and "CSRF" in r.json["error"]  # JSON, for the page's script
    token = browser.get("/api/me").json["csrf_token"]
    r = browser.post("/upload/analyze", data={"file": (BytesIO(content), "call.wav")},
                     content_type="multipart/form-data", headers={"X-CSRFToken": "forged"})
    assert r.status_code == 400
    r = browser.post("/upload/analyze", data={"file": (BytesIO(content), "call.wav")},
                     content_type="multipart/form-data", headers={"X-CSRFToken": token})
    assert r.status_code == 200, r.text


def test_a_wav_with_a_scenario(site, tmp_path):
    svc, admin = site
    r = send(admin, wav(tmp_path), "angry_sample.wav", scenario="everything")
    assert r.status_code == 200, r.text
    a = r.json
    assert a["filename"] == "angry_sample.wav" and a["channels"] == "mixed"
    assert isinstance(a["emotion"], str) and 0 < a["confidence"] <= 1 and a["duration"] == pytest.approx(7.0)
    assert [(s["start"], s["end"], s["role"]) for s in a["segments"]] == [(0, 3, "mixed"), (3, 6, "mixed"),
                                                                           (6, 7, "mixed")]
    # The test rule fires on any customer emotion (a mono file's mixed track stands in for the customer).
    verdict = a["scenario"]
    assert verdict["name"] == "everything"
    [alert] = verdict["alerts"]
    assert alert["rule"] == "any_customer_emotion" and alert["severity"] == "critical" and alert["summary"]
    # The timeline: timeline.py's boxes, one lane, every window, the rule's windows outlined.
    t = a["timeline"]
    assert t["width"] == 1000 and t["duration"] == pytest.approx(7.0)
    [lane] = t["lanes"]
    assert lane["role"] == "mixed" and len(lane["boxes"]) == 3
    assert all(b["used"] for b in lane["boxes"]) and all(b["color"].startswith("#") for b in lane["boxes"])
    # The CSV rows the page joins: one per segment, as the page's header has them.
    rows = list(csv.reader(io.StringIO(a["csv"])))
    assert len(rows) == 3 and all(len(row) == len(CSV_COLUMNS) for row in rows)
    assert rows[0][:3] == ["angry_sample.wav", "0.0", "3.0"] and rows[0][9:11] == ["everything",
                                                                                     "any_customer_emotion"]
    assert a["model"]["trial"] is False and a["audio"]["source_codec"] == "pcm_s16le"


def test_a_stereo_mp3_with_channel_roles_and_a_quiet_scenario(site, tmp_path):
    svc, admin = site
    mp3 = make_audio(tmp_path / "stereo", "mp3", 44100, 2, 4.0).read_bytes()
    r = send(admin, mp3, "stereo.mp3", channels="customer-agent", scenario="quiet")
    assert r.status_code == 200, r.text
    a = r.json
    assert a["tracks"] == [{"channel": 0, "role": "customer"}, {"channel": 1, "role": "agent"}]
    assert {s["role"] for s in a["segments"]} == {"customer", "agent"}
    assert [lane["role"] for lane in a["timeline"]["lanes"]] == ["customer", "agent"]
    assert a["scenario"] == {"name": "quiet", "description": "A second scenario, so the page lists more than one",
                             "alerts": []}
    assert a["audio"]["source_codec"] == "mp3" and a["layout_note"] is None
    # Without a scenario: no verdict; roles for a mono file: analysed mixed, and said so.
    r = send(admin, wav(tmp_path), "mono.wav", channels="agent-customer")
    assert r.status_code == 200 and r.json["scenario"] is None
    assert "mono" in r.json["layout_note"] and r.json["tracks"] == [{"channel": -1, "role": "mixed"}]


def test_bad_files_and_fields_get_a_clear_error(site, tmp_path):
    svc, admin = site
    r = send(admin, b"not audio" * 100, "x.wav")
    assert r.status_code == 400 and r.json["error"].startswith("cannot decode recording")
    r = send(admin, wav(tmp_path, "short", seconds=0.5), "short.wav")
    assert r.status_code == 422 and "no speech" in r.json["error"]
    r = admin.post("/upload/analyze", data={"other": "x"}, content_type="multipart/form-data")
    assert r.status_code == 400 and "'file'" in r.json["error"]
    r = send(admin, wav(tmp_path), scenario="no-such-scenario")
    assert r.status_code == 400 and "unknown scenario 'no-such-scenario'" in r.json["error"]
    assert "everything" in r.json["error"]
    r = send(admin, wav(tmp_path), channels="0=agent;rm -rf")
    assert r.status_code == 400 and "channels must be one of" in r.json["error"]


def test_a_hostile_file_name_is_cleaned_and_quoted_in_the_csv(site, tmp_path):
    svc, admin = site
    name = "=HYPERLINK('http://evil.example')<img src=x onerror=alert(1)>\x01.wav"
    r = send(admin, wav(tmp_path), name)
    assert r.status_code == 200, r.text
    assert r.json["filename"] == name.replace("\x01", "?")  # JSON; the page sets it as text
    rows = list(csv.reader(io.StringIO(r.json["csv"])))
    assert rows[0][0].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it


def test_what_was_said_comes_with_each_segment_and_in_the_csv(site, tmp_path, monkeypatch):
    """Words as a speech recognizer gave them (built by hand here: hostile ones): in the JSON
    the page sets as text, and in the CSV's last columns, formula-like words quoted."""
    from plugin.core.data import SegmentResult, summarize
    from plugin.web import upload_page
    from plugin.web.upload_audio import HeardUpload

    segs = [SegmentResult(0.0, 3.0, -1, "mixed", "angry", 0.9, {"angry": 0.9}, text="=cmd|' /C calc'!A0 <b>退款</b>",
                          language="zh", tag_emotion="angry", events=("laughter",)),
            SegmentResult(3.0, 6.0, -1, "mixed", "neutral", 0.8, {"neutral": 0.8}, text="", language="nospeech"),
            SegmentResult(6.0, 7.0, -1, "mixed", "neutral", 0.7, {"neutral": 0.7})]
    heard = HeardUpload(summarize(segs, 7.0), {"tracks": [{"channel": -1, "role": "mixed"}], "skipped_s": 0.0},
                        {"source_codec": "pcm_s16le"}, {"trial": False})
    monkeypatch.setattr(upload_page, "hear_upload", lambda upload, roles, **kw: heard)
    svc, admin = site
    r = send(admin, wav(tmp_path), "said.wav")
    assert r.status_code == 200, r.text
    first, quiet, unheard = r.json["segments"]
    assert (first["text"], first["language"], first["tag_emotion"], first["events"]) == (
        "=cmd|' /C calc'!A0 <b>退款</b>", "zh", "angry", ["laughter"])
    assert (quiet["text"], unheard["text"], unheard["events"]) == ("", None, [])
    rows = list(csv.reader(io.StringIO(r.json["csv"])))
    assert CSV_COLUMNS[-4:] == ["text", "language", "tag_emotion", "events"]
    assert rows[0][-4:] == ["'=cmd|' /C calc'!A0 <b>退款</b>", "zh", "angry", "laughter"]
    assert rows[1][-4:] == ["", "nospeech", "", ""] and rows[2][-4:] == ["", "", "", ""]


def test_nothing_of_an_upload_is_kept(site, tmp_path):
    svc, admin = site
    assert send(admin, wav(tmp_path)).status_code == 200
    assert send(admin, b"junk" * 100).status_code == 400
    assert list(files.data_subdir(svc.config.data_dir, files.TMP).iterdir()) == []
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Call)) == 0


def test_an_upload_over_the_limit_is_413(tmp_path, model_dir, sqlite_url, app_factory):
    svc, admin = app_factory(make_config(tmp_path, model_dir, sqlite_url, server={"max_upload_bytes": 10_000}),
                             model=True)
    r = send(admin, b"x" * 50_000, "big.wav")
    assert r.status_code == 413 and r.json["status"] == 413 and r.json["error"]
    add_user(svc, "vi", "viewer")  # a person's session: the CSRF check reads the body, and says 413 in JSON too
    browser = admin.application.test_client()
    login(browser, "vi")
    token = browser.get("/api/me").json["csrf_token"]
    r = browser.post("/upload/analyze", data={"file": (BytesIO(b"x" * 50_000), "big.wav")},
                     content_type="multipart/form-data", headers={"X-CSRFToken": token})
    assert r.status_code == 413 and r.json["status"] == 413
    assert "10 KB" in admin.get("/upload").text  # the page says the limit


def test_uploads_share_the_predict_queue(tmp_path, model_dir, sqlite_url, app_factory):
    svc, admin = app_factory(make_config(tmp_path, model_dir, sqlite_url,
                                         server={"predict_concurrency": 1, "predict_queue": 0}), model=True)
    content = wav(tmp_path)
    with admin.application.extensions[POOL].turn():  # the one place, held (as by a /predict upload)
        r = send(admin, content)
        assert r.status_code == 429 and "busy" in r.json["error"]
        assert int(r.headers["Retry-After"]) >= 1
        r = admin.post("/predict", data={"file": (BytesIO(content), "a.wav")}, content_type="multipart/form-data")
        assert r.status_code == 429
    assert send(admin, content).status_code == 200


def test_model_not_ready_says_when_to_try_again(tmp_path, sqlite_url, app_factory):
    _, admin = app_factory(make_config(tmp_path, None, sqlite_url))
    r = send(admin, wav(tmp_path))
    assert r.status_code == 503 and "Model not ready" in r.json["error"] and r.headers["Retry-After"] == "10"


def test_off_with_predict(tmp_path, model_dir, sqlite_url, app_factory):
    _, admin = app_factory(make_config(tmp_path, model_dir, sqlite_url, server={"predict_enabled": False}))
    assert admin.get("/upload").status_code == 404
    assert send(admin, b"x").status_code == 404
    assert 'href="/upload"' not in admin.get("/dashboard").text


# The tutorial's /predict answer, as it was before the upload page (and transcripts) came.
PREDICT_KEYS = {"filename", "emotion", "confidence", "timestamp", "duration", "segments", "skipped_silence_s",
                "source_rate", "source_codec", "source_format", "resampler", "narrowband", "high_band_db",
                "partial", "declared_s", "decoded_s", "model"}
PREDICT_SEGMENT_KEYS = {"start", "end", "emotion", "confidence"}


def predict_keys(answer: dict) -> set[str]:
    """PREDICT_KEYS, and why for a narrowband file (telephone audio: 8 kHz, or upsampled)."""
    return PREDICT_KEYS | ({"narrowband_reason"} if answer.get("narrowband") else set())


def test_the_tutorials_predict_answer_is_unchanged(site, tmp_path):
    svc, admin = site
    r = admin.post("/predict", data={"file": (BytesIO(wav(tmp_path)), "angry_sample.wav")},
                   content_type="multipart/form-data")
    assert r.status_code == 200
    assert set(r.json) == predict_keys(r.json) == PREDICT_KEYS
    assert [set(s) for s in r.json["segments"]] == [PREDICT_SEGMENT_KEYS] * 3
    r = admin.post("/predict", data={"file": (BytesIO(b"junk" * 100), "x.wav")}, content_type="multipart/form-data")
    assert r.status_code == 400 and set(r.json) == {"error"}


def test_an_upload_is_transcribed_by_the_loaded_speech_model_and_predict_stays_as_it_was(
        site, tmp_path, speech_model, standin):
    """The real path: the stand-in SenseVoice (tests/asr_standin.py) hears the upload; the
    page's segments carry its words, numbers masked; /predict's answer has no new keys."""
    from tests.asr_standin import write_call

    svc, admin = site
    svc.model.speech.model = speech_model
    try:
        path = write_call(tmp_path / "said.wav", standin, [["我要投诉", "我的手机是13812345678"]])
        r = send(admin, path.read_bytes(), "said.wav")
        assert r.status_code == 200, r.text
        assert [s["text"] for s in r.json["segments"]] == ["我要投诉", "我的手机是*******5678"]
        p = admin.post("/predict", data={"file": (BytesIO(path.read_bytes()), "said.wav")},
                       content_type="multipart/form-data")
        assert p.status_code == 200, p.text
        assert set(p.json) == predict_keys(p.json)
        assert "我要投诉" not in p.text  # /predict does not transcribe
        assert all(set(s) == PREDICT_SEGMENT_KEYS for s in p.json["segments"])
    finally:
        svc.model.speech.model = None


class CountingRules:
    """A rules holder that counts how often the rules in force are read."""

    def __init__(self, holder):
        self.holder, self.reads = holder, 0

    @property
    def current(self):
        self.reads += 1
        return self.holder.current


def test_one_upload_is_listened_to_and_judged_by_one_reading_of_the_rules(site, tmp_path, monkeypatch):
    """A rules reload between listening (which windows get words) and judging cannot give
    the two different versions: the rules are read once per upload."""
    from plugin.web import upload_audio

    svc, admin = site
    heard_with = []
    real_listening = upload_audio.listening
    monkeypatch.setattr(upload_audio, "listening",
                        lambda speech, cfg, rules: heard_with.append(rules) or real_listening(speech, cfg, rules))
    counting = CountingRules(svc.rules_holder)
    monkeypatch.setattr(svc, "rules_holder", counting)
    r = send(admin, wav(tmp_path), scenario="everything")
    assert r.status_code == 200, r.text
    assert counting.reads == 1 and heard_with == [counting.holder.current]


def test_an_upload_says_why_it_has_no_words_when_the_speech_model_is_wanted_but_not_loaded(
        site, tmp_path, monkeypatch):
    svc, admin = site
    r = send(admin, wav(tmp_path))
    assert r.status_code == 200 and r.json["transcript_note"] is None  # asr is off: no words, nothing to say
    monkeypatch.setattr(svc.config.asr, "enabled", True)
    monkeypatch.setattr(svc.model.speech, "reason", "cannot load speech model 'iic/SenseVoiceSmall': no network")
    r = send(admin, wav(tmp_path))
    assert r.status_code == 200, r.text
    assert r.json["transcript_note"] == "none: cannot load speech model 'iic/SenseVoiceSmall': no network"
    assert all(s["text"] is None for s in r.json["segments"])
    p = admin.post("/predict", data={"file": (BytesIO(wav(tmp_path)), "a.wav")}, content_type="multipart/form-data")
    assert set(p.json) == predict_keys(p.json)  # the tutorial's answer does not carry it
