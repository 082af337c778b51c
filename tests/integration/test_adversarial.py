"""The attacker's list: distinct bad inputs across the webhook, the API, uploads, config,
rule files and recordings, each run against one live app (SQLite and PostgreSQL) with
every secret configured. For each one:

- the answer is a clear refusal (a 4xx with a reason, a call that failed saying why, a
  config or rules error naming where), never a 5xx;
- no secret appears in any answer, stored error or log line;
- a good call right after is still accepted AND analysed, so nothing was left broken.

Other modules test each defence in depth; this one holds them to the same three promises.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import requests

from plugin import config as config_mod
from plugin.audio.decode import ffmpeg_exe
from plugin.config import ConfigError
from plugin.core import scrub
from plugin.services import build
from plugin.web.app import create_app
from tests.conftest import (
    ALWAYS,
    SECRET,
    _postgres_url,
    _sqlite_url,
    api_token,
    authed,
    event,
    make_config,
    signed,
    use_model,
)
from tests.helpers import FakeServer, Reply, make_audio, wecom_robot

CRM_TOKEN = "crm-token-5f1e2d"
ROBOT_KEY = "robot-key-9a8b7c"
DB_PASSWORD = "db-pass-4c3b2a"  # PostgreSQL here trusts 127.0.0.1, so any password connects


@dataclass
class Harness:
    svc: object
    admin: object  # Flask test client with an admin token
    anon: object
    viewer: object
    recordings: FakeServer
    crm: FakeServer
    wecom: FakeServer
    rules_dir: Path
    work: Path
    secrets: list[str]
    n: int = 0

    def post(self, body, secret: str = SECRET, signature: str | None = None, **headers):
        kw = signed(body, secret, signature)
        kw["headers"].update(headers)
        return self.anon.post("/webhooks/generic", **kw)

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def serve(self, name: str, data: bytes | Path, **headers) -> str:
        body = data.read_bytes() if isinstance(data, Path) else data
        self.recordings.routes["/" + name] = Reply(200, body, {"Content-Type": "audio/*", **headers})
        return f"{self.recordings.url}/{name}"

    def run_jobs(self) -> None:
        while (job_id := self.svc.jobs.claim("adversary")) is not None:
            self.svc.pipeline().run_job(job_id, "adversary")

    def deliver(self) -> None:
        with requests.Session() as http:
            http.trust_env = False
            self.svc.outbox().drain(http, "adversary")

    def call(self, call_id: int) -> dict:
        r = self.admin.get(f"/api/calls/{call_id}")
        assert r.status_code == 200, r.text
        return r.json

    def recording_call(self, url: str) -> dict:
        """A signed event for ``url``, accepted, then worked: the call as the API shows it."""
        r = self.post(event(self.next_id("rec"), url))
        assert r.status_code == 202, r.text
        self.run_jobs()
        return self.call(r.json["call_id"])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def harness(request, tmp_path_factory, model_dir, emotion_model):
    work = tmp_path_factory.mktemp("adversary")
    if request.param == "sqlite":
        db_url = _sqlite_url(work, request.getfixturevalue("migrated_sqlite"))
    else:
        db_url = _postgres_url(request).replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    servers = [FakeServer() for _ in range(3)]
    recordings, crm, wecom = servers
    crm.default = Reply(200, {"ok": True})
    wecom.routes["/cgi-bin/webhook/send"] = wecom_robot
    rules_dir = work / "rules"
    rules_dir.mkdir()
    (rules_dir / "always.yaml").write_text(ALWAYS, encoding="utf-8")
    cfg = make_config(work, model_dir, db_url, crm=crm, wecom=wecom, rules={"path": str(rules_dir)},
                      worker={"max_attempts": 1}, fetch={"max_bytes": 4_000_000, "max_seconds": 3},
                      server={"max_upload_bytes": 2_000_000},
                      sinks={"crm": {"auth_header": f"Bearer {CRM_TOKEN}"},
                             "wecom": {"url": wecom.url + f"/cgi-bin/webhook/send?key={ROBOT_KEY}"}})
    svc = build(cfg)
    use_model(svc, emotion_model)
    app = create_app(services=svc)
    admin_token = api_token(svc, "admin", "adversary-admin")
    h = Harness(svc, authed(app, None), authed(app, None), authed(app, "viewer"), recordings, crm, wecom,
                rules_dir, work, [SECRET, CRM_TOKEN, ROBOT_KEY, DB_PASSWORD, admin_token, svc.secret_key])
    h.admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token}"
    h.good_audio = make_audio(work / "good", "wav_pcm", 8000, 2, 4.0)
    yield h
    svc.close()
    for s in servers:
        s.close()


@pytest.fixture
def logs(caplog):
    """Every log line, at DEBUG, as the service's handlers write it (scrubbed as they are)."""
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(scrub.LogFilter())
    caplog.handler.addFilter(scrub.PhoneFilter())
    return caplog


# --- what a case returns, and what every case must satisfy ------------------------------

@dataclass
class Refused:
    """A config or rules input refused with ``message`` (checked: one line, says where)."""
    message: str
    where: str


def check_outcome(kind: str, outcome, h: Harness) -> str:
    """Asserts the outcome is a clear refusal; returns the text it showed the attacker."""
    if kind == "http":
        r = outcome
        assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
        if 300 <= r.status_code < 400:  # a page for people: sent to the login page
            assert r.location.startswith("/login"), r.location
        else:
            assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
            if r.is_json:
                assert r.json.get("error"), r.json
        return r.get_data(as_text=True) + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    if kind == "call":
        call = outcome
        assert call["status"] == "failed" and call["error"], call
        job_errors = [j.get("last_error") or "" for j in call.get("jobs", [])]
        return json.dumps(call, ensure_ascii=False) + "\n".join(job_errors)
    if kind == "refused":
        assert "\n" not in outcome.message.strip() and outcome.where in outcome.message, outcome
        return outcome.message
    raise AssertionError(kind)


def good_call_still_works(h: Harness) -> None:
    url = h.serve(h.next_id("good") + ".wav", h.good_audio)
    r = h.post(event(h.next_id("good"), url, channels={"0": "agent", "1": "customer"}))
    assert r.status_code == 202, r.text
    h.run_jobs()
    call = h.call(r.json["call_id"])
    assert call["status"] == "analyzed" and call["segments"], call.get("error")


# --- the webhook --------------------------------------------------------------------------

def _url(h):
    return h.serve("door.wav", h.good_audio)


def _body(h, **fields) -> bytes:
    return json.dumps(event(h.next_id("door"), _url(h), **fields)).encode()


TRAVERSAL = "../../../admin/users/1/delete?confirm=yes#"

WEBHOOK = {
    "unsigned": lambda h: h.post(_body(h), signature=""),
    "signed with another secret": lambda h: h.post(_body(h), secret="guess"),
    "signature of another body": lambda h: h.post(_body(h), signature=scrub_sig(h)),
    "non-ASCII signature header": lambda h: h.anon.post(
        "/webhooks/generic", data=_body(h),
        headers={"Content-Type": "application/json", "X-CallMood-Signature": "sha256=é".encode().decode("latin-1")}),
    "not JSON": lambda h: h.post(b"call_id=1&recording_url=x"),
    "a JSON array": lambda h: h.post(b"[1, 2, 3]"),
    "nested 10,000 deep": lambda h: h.post(b"[" * 10_000 + b"]" * 10_000),
    "NaN": lambda h: h.post(_body(h)[:-1] + b', "x": NaN}'),
    "1e999": lambda h: h.post(_body(h)[:-1] + b', "x": 1e999}'),
    "NUL in customer_id": lambda h: h.post(_body(h, customer_id="c\x00")),
    "NUL deep in metadata": lambda h: h.post(_body(h, extra={"a": ["ok", "bad\x00"]})),
    "path traversal in customer_id": lambda h: h.post(_body(h, customer_id=TRAVERSAL)),
    "slash in call_id": lambda h: h.post(json.dumps(event("../../etc", _url(h))).encode()),
    "markdown and <@all> in agent_id": lambda h: h.post(_body(h, agent_id="a\n### 紧急 <@all>")),
    "link in ticket_id": lambda h: h.post(_body(h, ticket_id="[点我](http://phish.example)")),
    "CR/LF in queue": lambda h: h.post(_body(h, queue="x\r\nX-Evil: 1")),
    "300-character customer_id": lambda h: h.post(_body(h, customer_id="c" * 300)),
    "letters in the phone": lambda h: h.post(_body(h, customer_phone="call me <@all>")),
    "file:// recording": lambda h: h.post(json.dumps(event(h.next_id("f"), "file:///etc/passwd")).encode()),
    "gopher:// recording": lambda h: h.post(json.dumps(event(h.next_id("g"), "gopher://127.0.0.1:6379/_FLUSHALL")).encode()),
    "channel 9": lambda h: h.post(_body(h, channels={"9": "customer"})),
    "channel role 'admin'": lambda h: h.post(_body(h, channels={"0": "admin"})),
    "call_id an object": lambda h: h.post(_body(h)[:-1] + b', "call_id": {"$ne": null}}'),
    "missing recording_url": lambda h: h.post(json.dumps({"call_id": "x", "customer_id": "c"}).encode()),
    "invalid UTF-8": lambda h: h.post(b'{"call_id": "\xff\xfe", "recording_url": "http://x/y"}'),
    "2 MB body": lambda h: h.post(_body(h)[:-1] + b', "pad": "' + b"a" * 2_000_000 + b'"}'),
    "unknown source": lambda h: h.anon.post("/webhooks/..%2f..%2fapi", data=b"{}", content_type="application/json"),
}


def scrub_sig(h) -> str:
    from connectors.sources.generic import sign
    return sign(b'{"call_id": "other"}', SECRET)


# --- the API and the pages ------------------------------------------------------------

def _feedback_target(h) -> int:
    """An alert to aim at (the always-firing test rule makes one per analysed call)."""
    calls = h.admin.get("/api/calls?status=analyzed&limit=1").json["calls"]
    if not calls:
        good_call_still_works(h)
        calls = h.admin.get("/api/calls?status=analyzed&limit=1").json["calls"]
    return h.call(calls[0]["id"])["alerts"][0]["id"]


API = {
    "no credentials": lambda h: h.anon.get("/api/calls"),
    "a made-up bearer token": lambda h: h.anon.get("/api/calls", headers={"Authorization": "Bearer cm_guess"}),
    "a page without a login": lambda h: h.anon.get("/dashboard"),
    "a call page with a forged link key": lambda h: h.anon.get("/calls/1?k=eyJjIjoxfQ.forged.sig"),
    "metrics without credentials": lambda h: h.anon.get("/metrics"),
    "a viewer setting a verdict": lambda h: h.viewer.post(f"/api/alerts/{_feedback_target(h)}/feedback",
                                                          json={"verdict": "correct"}),
    "a verdict as text/plain": lambda h: h.admin.post(f"/api/alerts/{_feedback_target(h)}/feedback",
                                                      data='{"verdict": "correct"}', content_type="text/plain"),
    "a verdict that is not one": lambda h: h.admin.post(f"/api/alerts/{_feedback_target(h)}/feedback",
                                                        json={"verdict": "'; DROP TABLE alerts; --"}),
    "a 10,000-character note": lambda h: h.admin.post(f"/api/alerts/{_feedback_target(h)}/feedback",
                                                      json={"verdict": "correct", "note": "n" * 10_000}),
    "a verdict body that is a list": lambda h: h.admin.post(f"/api/alerts/{_feedback_target(h)}/feedback",
                                                            json=["correct"]),
    "a call id past 64 bits": lambda h: h.admin.get("/api/calls/99999999999999999999999"),
    "an alert id past 32 bits": lambda h: h.admin.get("/api/alerts/4294967296"),
    "a negative notification id": lambda h: h.admin.get("/api/notifications/-1"),
    "a cookie login form without its CSRF token": lambda h: h.anon.post(
        "/login", data={"name": "admin", "password": "x" * 12}),
    "a login with SQL in the name": lambda h: _login(h, "admin' OR '1'='1", "whatever-long"),
}


def _login(h, name, password):
    page = h.anon.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    return h.anon.post("/login", data={"name": name, "password": password, "csrf_token": token})


# --- uploads (/predict) ---------------------------------------------------------------

def _upload(h, data: bytes, filename: str = "x.wav"):
    import io
    return h.admin.post("/predict", data={"file": (io.BytesIO(data), filename)},
                        content_type="multipart/form-data")


def _ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args, str(out)], check=True)
    return out


def _eight_channels(h) -> bytes:
    path = h.work / "eight.flac"
    if not path.exists():
        _ffmpeg(path, "-f", "lavfi", "-i", "anullsrc=r=8000:cl=7.1", "-t", "600", "-c:a", "flac")
    return path.read_bytes()


def _playlist(h) -> bytes:
    return b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n"


def _concat(h) -> bytes:
    return b"ffconcat version 1.0\nfile '/etc/passwd'\n"


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + b"\x00" * 64

UPLOAD = {
    "no file field": lambda h: h.admin.post("/predict", data={"other": "x"}, content_type="multipart/form-data"),
    "random bytes": lambda h: _upload(h, bytes(range(256)) * 40),
    "a PNG named .mp3": lambda h: _upload(h, PNG, "song.mp3"),
    "8 channels x 10 min FLAC": lambda h: _upload(h, _eight_channels(h), "bomb.flac"),
    "an HLS playlist naming /etc/passwd": lambda h: _upload(h, _playlist(h), "x.m3u8"),
    "an ffconcat list naming /etc/passwd": lambda h: _upload(h, _concat(h), "x.ffconcat"),
    "an upload over max_upload_bytes": lambda h: _upload(h, b"\0" * 2_100_000),
    "an upload without a login": lambda h: h.anon.post("/predict", data={}, content_type="multipart/form-data"),
}


# --- recordings the webhook points at -------------------------------------------------

def _redirect_to(h, target: str) -> str:
    name = h.next_id("redirect")
    h.recordings.routes["/" + name] = Reply(302, b"", {"Location": target})
    return f"{h.recordings.url}/{name}"


RECORDING = {
    "cloud metadata address": lambda h: h.recording_call("http://169.254.169.254/latest/meta-data/"),
    "a redirect to cloud metadata": lambda h: h.recording_call(_redirect_to(h, "http://169.254.169.254/x")),
    "a redirect to file://": lambda h: h.recording_call(_redirect_to(h, "file:///etc/passwd")),
    "a 404": lambda h: h.recording_call(f"{h.recordings.url}/missing.wav"),
    "an empty file": lambda h: h.recording_call(h.serve(h.next_id("empty"), b"")),
    "an HTML error page with 200": lambda h: h.recording_call(h.serve(h.next_id("html"), b"<html>oops</html>" * 50)),
    "random bytes": lambda h: h.recording_call(h.serve(h.next_id("noise"), bytes(range(256)) * 100)),
    "a PNG named .mp3": lambda h: h.recording_call(h.serve(h.next_id("png") + ".mp3", PNG)),
    "8 channels": lambda h: h.recording_call(h.serve(h.next_id("eight") + ".flac", _eight_channels(h))),
    "an HLS playlist naming /etc/passwd": lambda h: h.recording_call(h.serve(h.next_id("hls") + ".m3u8", _playlist(h))),
    "bigger than fetch.max_bytes": lambda h: h.recording_call(h.serve(h.next_id("big"), b"\0" * 4_100_000)),
}


# --- config files ---------------------------------------------------------------------

def _config(h, text: str, env: dict[str, str] | None = None) -> Refused:
    path = h.work / f"{h.next_id('config')}.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        # As `serve` and `worker` read it: the secrets of sinks and lookups are needed there.
        config_mod.load(path).require_env("sinks", "identity.lookup")
    except ConfigError as exc:
        return Refused(str(exc), str(path))
    raise AssertionError(f"config accepted: {text!r}")


BOMB = "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, c in zip([None, *"abcdefgh"], "abcdefghi"))

CONFIG = {
    "a mistyped key": lambda h: _config(h, "modle: {path: x}\n"),
    "a string for a number": lambda h: _config(h, "server: {port: eighty}\n"),
    "an unset ${VARIABLE}": lambda h: _config(
        h, "sinks: {crm: {type: rest, url: 'http://x', auth_header: '${NOPE_NOT_SET_9}'}}\n"),
    "broken YAML": lambda h: _config(h, "server:\n  port: [8080\n"),
    "a YAML alias bomb": lambda h: _config(h, BOMB),
    "a list at the top": lambda h: _config(h, "- a\n- b\n"),
    "a network that is not one": lambda h: _config(h, "fetch: {allow_networks: ['10.0.0.0/33']}\n"),
    "a python object tag": lambda h: _config(h, "data_dir: !!python/object/apply:os.system ['true']\n"),
}


# --- rule files (hot reload: refused, the rules in force stay) --------------------------

def _rules(h, text: str) -> Refused:
    holder = h.svc.rules_holder
    before = holder.version
    bad = h.rules_dir / "zz-bad.yaml"
    bad.write_text(text, encoding="utf-8")
    try:
        assert holder.reload_if_changed() is False
        assert holder.version == before
        status = holder.status()
        assert status["status"] == "refused", status
        problem = status["refused"]["problems"][0]
    finally:
        bad.unlink()
        holder.reload_if_changed()
    return Refused(problem, "zz-bad.yaml")


def _scenario(name: str, summary: str | None = None, extra_condition: str | None = None) -> str:
    """The always-firing test scenario under another name, with a summary or a condition added."""
    text = ALWAYS.replace("scenario: everything", f"scenario: {name}").replace("default: true", "default: false")
    if summary is not None:
        text = text.replace("    actions:", f"    summary: \"{summary}\"\n    actions:")
    if extra_condition is not None:
        text = text.replace("min_share: 0.0", f"min_share: 0.0\n      {extra_condition}")
    return text


RULES = {
    "broken YAML": lambda h: _rules(h, "scenario: x\nrules: [\n"),
    "a YAML alias bomb": lambda h: _rules(h, BOMB),
    "a template reaching for __class__": lambda h: _rules(h, _scenario("evil", "{{ call.__class__.__mro__ }}")),
    "a template building 100 MB": lambda h: _rules(h, _scenario("big", "{{ 'x' * 100000000 }}")),
    "an unknown condition": lambda h: _rules(h, _scenario("odd", extra_condition="exec: rm -rf /")),
    "a python object tag": lambda h: _rules(h, "scenario: !!python/object/apply:os.system ['true']\n"),
}

CASES = ([("http", f"webhook: {k}", v) for k, v in WEBHOOK.items()]
         + [("http", f"api: {k}", v) for k, v in API.items()]
         + [("http", f"upload: {k}", v) for k, v in UPLOAD.items()]
         + [("call", f"recording: {k}", v) for k, v in RECORDING.items()]
         + [("refused", f"config: {k}", v) for k, v in CONFIG.items()]
         + [("refused", f"rules: {k}", v) for k, v in RULES.items()])


def test_there_are_at_least_40_distinct_bad_inputs():
    assert len(CASES) >= 40 and len({name for _, name, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("kind,name,attack", CASES, ids=[name for _, name, _ in CASES])
def test_a_bad_input_is_refused_clearly_leaks_nothing_and_breaks_nothing(
        harness: Harness, logs, kind: str, name: str, attack: Callable):
    shown = check_outcome(kind, attack(harness), harness)
    harness.deliver()  # whatever the bad input planned is sent (or dies) now, with its logs
    for secret in harness.secrets:
        assert secret not in shown, f"{name}: a secret in the answer"
        assert secret not in logs.text, f"{name}: a secret in the log"
    good_call_still_works(harness)
    for secret in harness.secrets:
        assert secret not in logs.text, f"{name}: a secret in the log of the good call"


def test_a_recording_that_trickles_fails_at_the_deadline(harness: Harness, logs):
    """fetch.max_seconds is a wall-clock bound, whatever the sender does."""
    import socket
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: audio/wav\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"x")
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        t = time.monotonic()
        call = harness.recording_call(f"http://127.0.0.1:{listener.getsockname()[1]}/slow.wav")
        took = time.monotonic() - t
    finally:
        stop.set()
        listener.close()
    check_outcome("call", call, harness)
    assert took < 3 + 5, took  # fetch.max_seconds is 3
    good_call_still_works(harness)
