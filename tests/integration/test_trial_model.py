"""Honest trials (issue 15, item 5): a model directory `callmood make-random-model` wrote is
marked, and while it is loaded /health, every page, `callmood analyze` and every CRM and
WeCom message say "trial model, random weights". The offline trial's rules
(rules/trial/) fire on such a model, so a newcomer sees a CRM tag and a WeCom alert.

The shared ``model_dir`` fixture is built by ``build_random_model_dir`` without the
marker: it stands in here for a real, downloaded model directory."""

from __future__ import annotations

import csv
import io
import shutil
import textwrap
from pathlib import Path

import pytest
import requests

from plugin.config import Config, ModelConfig
from plugin.core import trial
from plugin.model.loading import EmotionModel
from plugin.model.modeldir import MARKER, is_trial_model_dir
from rules.check import check_rules
from rules.engine import load_rules
from plugin.commands.trial import tone_wav
from tests.conftest import event, make_config, signed, use_model
from tests.helpers import run_cli
from tests.speech import write_conversation

ROOT = Path(__file__).resolve().parents[2]
TRIAL_RULES = ROOT / "rules" / "trial"
CUSTOMER = "I have been charged twice this month and nobody has called me back. This is unacceptable."


@pytest.fixture(scope="module")
def trial_dir(tmp_path_factory) -> Path:
    """A model directory made as a newcomer makes one: `callmood make-random-model DIR`."""
    dest = tmp_path_factory.mktemp("trial") / "random-model"
    r = run_cli("make-random-model", str(dest))
    assert r.returncode == 0, r.stderr
    assert "marked as a trial model" in r.stdout
    return dest


@pytest.fixture(scope="module")
def trial_model(trial_dir) -> EmotionModel:
    return EmotionModel(ModelConfig(path=str(trial_dir), device="cpu"))


def test_make_random_model_marks_its_directory_and_a_copy_keeps_the_mark(trial_dir, model_dir, tmp_path):
    assert (trial_dir / MARKER).is_file() and is_trial_model_dir(trial_dir)
    assert "RANDOM" in (trial_dir / MARKER).read_text(encoding="utf-8")
    # cp -r, and cp DIR/* (no dot file to lose)
    assert is_trial_model_dir(shutil.copytree(trial_dir, tmp_path / "copied"))
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in trial_dir.glob("*"):
        shutil.copy(f, flat / f.name)
    assert is_trial_model_dir(flat)
    # A directory without the marker (a download, the tests' stand-in) is no trial ...
    assert not is_trial_model_dir(model_dir)
    # ... nor one whose random weights were later replaced by others (the marker is stale).
    (flat / "model.pt").write_bytes(b"other weights")
    assert not is_trial_model_dir(flat)


def test_loading_knows_which_model_is_a_trial(trial_model, emotion_model):
    assert trial_model.trial and trial_model.provenance() == {"trial": True, "precision": trial_model.precision}
    assert trial.TEXT in trial_model.describe()
    assert not emotion_model.trial and emotion_model.provenance() == {"trial": False,
                                                                      "precision": emotion_model.precision}


# --- a call through the service ------------------------------------------------------------

def _serve(tmp_path, db_url, app_factory, clock, model, crm, wecom, rules=TRIAL_RULES, **overrides):
    cfg = make_config(tmp_path, None, db_url, crm=crm, wecom=wecom,
                      rules={"path": str(rules), "reload_interval_s": 0}, **overrides)
    svc, client = app_factory(cfg, clock=clock)
    use_model(svc, model)
    return svc, client


def _analyse(svc, client, url: str, call_id: str = "trial-1") -> int:
    r = client.post("/webhooks/generic", **signed(event(call_id, url)))
    assert r.status_code == 202, r.text
    job_id = svc.jobs.claim("worker")
    svc.pipeline().run_job(job_id, "worker")
    return r.json["call_id"]


def _send(svc) -> None:
    with requests.Session() as http:
        http.trust_env = False
        svc.outbox().drain(http, "sender")


def _speech(tmp_path) -> Path:
    return write_conversation(tmp_path / "speech", [(0, 1.0, CUSTOMER)], 10.0)


def _tone(tmp_path) -> Path:
    p = tmp_path / "trial-call.wav"
    p.write_bytes(tone_wav())  # what `callmood trial-receiver` serves in the README's trial
    return p


@pytest.mark.parametrize("recording, vad", [(_tone, "energy"), (_speech, "silero")], ids=["tone", "speech"])
def test_a_call_a_trial_model_analysed_says_so_everywhere(tmp_path, sqlite_url, app_factory, clock, trial_model,
                                                           crm, wecom, recordings, recording, vad):
    svc, client = _serve(tmp_path, sqlite_url, app_factory, clock, trial_model, crm, wecom, audio={"vad": vad})
    url = recordings.serve_file("/call.wav", recording(tmp_path))
    call_id = _analyse(svc, client, url)
    _send(svc)

    call = client.get(f"/api/calls/{call_id}").json
    assert call["status"] == "analyzed" and call["summary"]["model"] == {"trial": True,
                                                                         "precision": trial_model.precision}
    # The trial rules fired on the random model: one CRM tag, one WeCom alert arrived.
    [alert] = call["alerts"]
    assert alert["rule"] == "trial_any_speech"
    # The rule's action writes the CRM record; the WeCom message comes through routing.yaml.
    assert {d["sink"]: d["status"] for d in alert["deliveries"]} == {"crm": "delivered"}
    [routed] = alert["routing"]
    assert routed["receiver"] == "supervisors" and routed["notification_status"] == "delivered"

    [tagged] = crm.requests
    body = tagged.json()
    assert body["trial"] is True and body["tags"] == ["callmood-trial"]
    assert body["note"].startswith(f"{trial.LABEL}: ") and "trial rule fired on" in body["note"]
    assert tagged.headers["X-CallMood-Model"] == trial.TEXT
    [robot] = wecom.requests
    first, *rest = robot.json()["markdown"]["content"].splitlines()
    assert first == "试用模型（随机权重）trial model, random weights"
    assert rest[0] == "### 客户情绪预警 / Customer emotion alert"

    for who in (client, client.application.test_client()):  # an admin, anyone
        answer = who.get("/health")
        assert answer.status_code == 200 and answer.json["trial"] is True
        assert answer.json["message"] == "Model is ready for inference (trial model, random weights)"
    # A page says it in its own language: trial.LABEL's Chinese half, or its English.
    zh, en = {"Accept-Language": "zh-CN"}, {"Accept-Language": "en"}
    assert trial.LABEL == "试用模型（随机权重）" + trial.TEXT
    for page in ("/dashboard", f"/calls/{call_id}"):
        assert "试用模型（随机权重）" in client.get(page, headers=zh).text
        assert "Trial model, random weights" in client.get(page, headers=en).text
    anyone = client.application.test_client()  # no login needed
    assert "试用模型（随机权重）" in anyone.get("/login", headers=zh).text
    assert "Trial model, random weights" in anyone.get("/login", headers=en).text


def test_a_real_model_says_nothing_of_the_kind(tmp_path, sqlite_url, app_factory, clock, emotion_model,
                                               crm, wecom, recordings):
    svc, client = _serve(tmp_path, sqlite_url, app_factory, clock, emotion_model, crm, wecom)
    call_id = _analyse(svc, client, recordings.serve_file("/call.wav", _tone(tmp_path)))
    _send(svc)

    call = client.get(f"/api/calls/{call_id}").json
    assert call["summary"]["model"] == {"trial": False, "precision": emotion_model.precision}
    [tagged] = crm.requests
    assert "trial" not in tagged.json() and "X-CallMood-Model" not in tagged.headers
    assert not tagged.json()["note"].startswith(trial.LABEL)
    content = wecom.requests[0].json()["markdown"]["content"]
    assert content.startswith("### 客户情绪预警") and "random weights" not in content
    answer = client.get("/health").json
    assert answer["message"] == "Model is ready for inference" and "trial" not in answer
    assert client.application.test_client().get("/health").json == {
        "status": "success", "message": "Model is ready for inference"}
    for page in ("/dashboard", f"/calls/{call_id}"):
        assert "random weights" not in client.get(page, headers={"Accept-Language": "en"}).text
        assert "随机权重" not in client.get(page, headers={"Accept-Language": "zh-CN"}).text


def test_a_message_follows_the_model_that_analysed_its_call(tmp_path, sqlite_url, app_factory, clock,
                                                            trial_model, emotion_model, crm, wecom, recordings):
    """A notification held by group_wait is rendered later, by the scheduler: it says
    "trial" because of the call's stored results, whatever model is loaded by then."""
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(TRIAL_RULES / "trial.yaml", rules)
    (rules / "routing.yaml").write_text(textwrap.dedent("""\
        defaults: {group_wait: 30s}
        receivers:
          supervisors: {sink: wecom}
        routes:
          - receiver: supervisors
        """), encoding="utf-8")
    svc, client = _serve(tmp_path, sqlite_url, app_factory, clock, trial_model, crm, wecom, rules=rules)
    url = recordings.serve_file("/call.wav", _tone(tmp_path))
    _analyse(svc, client, url, "by-trial")
    use_model(svc, emotion_model)  # a real model is loaded before the notification goes out
    _analyse(svc, client, url, "by-real")
    assert "trial" not in client.get("/health").json
    clock.advance(seconds=31)
    assert svc.flush_notifications() == 1  # one group (the customer): both calls' alerts
    _send(svc)

    # One WeCom message (rules message no one themselves): the grouped notification holds a
    # trial call's alert, so it says so.
    [notification] = [r.json()["markdown"]["content"] for r in wecom.requests]
    assert "另有" in notification and notification.startswith(trial.LABEL)
    # The CRM records, one per call, each as its own model was.
    assert sorted("trial" in r.json() for r in crm.requests) == [False, True]


# --- `callmood analyze` --------------------------------------------------------------------

def _cfg(tmp_path, model) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {model}}}\naudio: {{vad: energy}}\nasr: {{enabled: false}}\n"
                 f"rules: {{path: {TRIAL_RULES}}}\n")
    return p


def test_analyze_says_trial_on_stderr_in_the_text_and_in_a_csv_column(tmp_path, trial_dir, model_dir):
    tone = _tone(tmp_path)
    r = run_cli("analyze", "-c", str(_cfg(tmp_path, trial_dir)), str(tone))
    assert r.returncode == 0, r.stderr
    assert f"{trial_dir}: trial model, random weights" in r.stderr
    assert f"== {tone} (" in r.stdout and "[trial model, random weights]" in r.stdout
    assert "alerts: trial_any_speech" in r.stdout  # the trial rules fire on the random model

    r = run_cli("analyze", "-c", str(_cfg(tmp_path, trial_dir)), "--csv", str(tone))
    rows = list(csv.DictReader(io.StringIO(r.stdout)))  # still plain CSV: no comment line
    assert rows and {x["model"] for x in rows} == {trial.TEXT}

    r = run_cli("analyze", "-c", str(_cfg(tmp_path, model_dir)), "--csv", str(tone))
    assert r.returncode == 0 and "random weights" not in r.stderr + r.stdout
    assert {x["model"] for x in csv.DictReader(io.StringIO(r.stdout))} == {str(model_dir)}


# --- the offline trial's rules -------------------------------------------------------------

def test_the_trial_rules_check_and_are_never_loaded_by_default():
    problems, _ = check_rules(TRIAL_RULES, {"crm", "wecom"})
    assert problems == []
    shipped = load_rules(Config().rules_path)  # rules.path unset: the shipped rules/scenarios
    assert sorted(s.scenario for s in shipped.scenarios) == ["finance_complaint", "general", "marketing",
                                                             "vip_customer"]
    assert all("trial" not in f.parts for f in shipped.files)
    # rules.path at the top of the rules tree holds no scenario file: refused, not the trial read in.
    with pytest.raises(Exception, match="no scenario files"):
        load_rules(ROOT / "rules")


# --- the sinks: whatever the message, it says so and still fits ------------------------------

def _ctx(summary: str = "客户很生气") -> dict:
    return {"call": {"customer_id": "c-1", "customer_phone": None, "agent_id": None, "ticket_id": None,
                     "external_id": "call-77"},
            "alert": {"rule": "r", "scenario": "s", "severity": "warning", "role": "customer", "emotions": ["angry"],
                      "share": 0.5, "confidence": 0.9, "matched": [[i * 3.0, i * 3.0 + 3] for i in range(500)],
                      "summary": summary},
            "action": {}, "link": "http://callmood.local/calls/7", "trial": True}


def test_a_trial_wecom_message_of_any_template_starts_with_the_line_and_fits_4096_bytes():
    from connectors.sinks.wecom_robot import MAX_BYTES, WeComRobotConfig, WeComRobotSink

    sink = WeComRobotSink("wecom", WeComRobotConfig(type="wecom_robot", url="http://w", mentioned_list=["boss"]))
    long = sink.render(_ctx("生气" * 3000))["body"]["markdown"]["content"]
    assert long.startswith(trial.LABEL + "\n") and len(long.encode("utf-8")) <= MAX_BYTES
    own = sink.render({**_ctx(), "action": {"template": "{{ alert.summary }}"}})["body"]["markdown"]["content"]
    assert own == f"{trial.LABEL}\n客户很生气"
    digest = sink.render({**_ctx(), "digest": True, "alerts": [
        {"alert": _ctx("x" * 400)["alert"], "call": {**_ctx()["call"], "customer_id": f"c-{i}"}, "link": "http://l", "time": "10:00"}
        for i in range(60)]})["body"]["markdown"]["content"]
    assert digest.startswith(trial.LABEL + "\n### 夜间汇总") and len(digest.encode("utf-8")) <= MAX_BYTES


def test_a_trial_crm_request_says_so_whatever_its_body():
    from connectors.sinks.rest import RestConfig, RestSink

    def render(body):
        return RestSink("crm", RestConfig(type="rest", url="http://crm/x", body=body)).render(_ctx())

    default = render(None)
    assert default["body"]["trial"] is True and default["body"]["note"] == f"{trial.LABEL}: 客户很生气"
    assert default["headers"] == {"X-CallMood-Model": trial.TEXT}
    own = render({"trial": "no", "text": "{{ alert.summary }}", "is_trial": "{{ trial }}"})
    assert own["body"] == {"trial": True, "text": "客户很生气", "is_trial": "True"}  # templates see it too
    listed = render(["{{ alert.summary }}"])
    assert listed["body"] == ["客户很生气"] and listed["headers"]["X-CallMood-Model"] == trial.TEXT
