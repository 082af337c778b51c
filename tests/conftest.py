"""Fixtures for every tier.

- tests/unit: plain data, pure functions; no database, network, model or files to speak of.
- tests/integration: one part against the real thing beside it: a database (SQLite and
  PostgreSQL), local HTTP servers, ffmpeg, the random-weight model; HTTP through Flask's
  in-process test client (``client``); time stepped with a ManualClock (``clock``).
- tests/e2e: the whole service (``service_factory``: real sockets, worker threads, the
  scheduler) and the ``callmood`` processes, as an operator runs them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from connectors.sources.generic import sign
from plugin import config as config_mod
from plugin.config import AsrConfig, ModelConfig
from plugin.core.clock import ManualClock
from plugin.model.loading import EmotionModel
from plugin.model.modeldir import build_random_model_dir
from plugin.model.sensevoice_dir import build_sensevoice_dir
from plugin.services import Services, build
from plugin.store.engine import make_engine, upgrade
from plugin.web.app import create_app
from tests.helpers import FakeServer, Reply, wait_until, wecom_robot

HERE = Path(__file__).resolve().parent
# Commands and config.load() read ./config.yaml when there is one (as `make run` does), and
# the README's offline trial writes one in the repo root, where tests run: every test reads
# an empty file instead (the defaults), unless it names its own config or sets this itself.
os.environ["CALLMOOD_CONFIG"] = os.devnull
SECRET = "test-secret"
PG_ADMIN_URL = os.environ.get("CALLMOOD_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 24, 2, 2)  # 10:02 in Asia/Shanghai: where ManualClocks start
ALWAYS = (HERE / "rules" / "always.yaml").read_text(encoding="utf-8")  # a rule that fires on every call


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny emotion2vec directory built by FunASR's own class with random weights."""
    return build_random_model_dir(tmp_path_factory.mktemp("emotion2vec-tiny"), "tiny")


@pytest.fixture(scope="session")
def emotion_model(model_dir) -> EmotionModel:
    """That model loaded once through funasr.AutoModel (batched engine, CPU), shared by
    the tests that do not test loading itself."""
    return EmotionModel(ModelConfig(path=str(model_dir), device="cpu"))


# What the stand-in speech model hears (tests/asr_standin.py): each fits one 3 s window.
STANDIN_SENTENCES = ["我要退款，不然我打12315。", "您好，请问有什么可以帮您？", "我要投诉", "我的手机是13812345678",
                     "我要投", "诉，找律师曝光给媒体", "好的，我帮您查一下。", "我的手机是138", "12345678，记一下"]


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    """A tiny SenseVoiceSmall directory built by FunASR's own class with random weights."""
    return build_sensevoice_dir(tmp_path_factory.mktemp("sensevoice-tiny"), "tiny")


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """A SenseVoiceSmall whose hand-set weights hear STANDIN_SENTENCES in StandIn.audio(s),
    tagged zh, ANGRY, Speech."""
    from tests.asr_standin import build_standin

    return build_standin(tmp_path_factory.mktemp("sensevoice-standin"), STANDIN_SENTENCES, emotion="ANGRY")


@pytest.fixture(scope="session")
def speech_model(standin):
    """The stand-in loaded once through funasr.AutoModel, shared."""
    from plugin.model.asr import SpeechModel

    return SpeechModel(AsrConfig(path=str(standin.path)), "cpu")


def _postgres_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL)
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def postgres_admin():
    problem = _postgres_available()
    if problem:
        if os.environ.get("CALLMOOD_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL required but unreachable at {PG_ADMIN_URL}: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {problem}")
    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield eng
    eng.dispose()


def _postgres_url(request) -> str:
    admin = request.getfixturevalue("postgres_admin")
    schema = "t_" + uuid.uuid4().hex[:12]
    with admin.connect() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    request.addfinalizer(lambda: _drop_schema(admin, schema))
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """An SQLite file at the newest schema, copied for each test that wants one (migrating
    a new file takes ~0.1 s; tests/integration/test_migrations.py runs the migrations)."""
    path = tmp_path_factory.mktemp("template") / "callmood.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _sqlite_url(tmp_path: Path, template: Path) -> str:
    shutil.copyfile(template, tmp_path / "callmood.db")
    return f"sqlite:///{tmp_path / 'callmood.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    """Each test gets its own empty database: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path, request.getfixturevalue("migrated_sqlite"))
    return _postgres_url(request)


@pytest.fixture
def postgres_url(request) -> str:
    """A fresh PostgreSQL schema, for what only PostgreSQL does."""
    return _postgres_url(request)


def _drop_schema(admin, schema):
    with admin.connect() as c:
        c.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


@pytest.fixture
def sqlite_url(tmp_path, migrated_sqlite) -> str:
    return _sqlite_url(tmp_path, migrated_sqlite)


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    """A rules directory of its own holding always.yaml, for tests that edit it."""
    d = tmp_path / "rules"
    d.mkdir()
    (d / "always.yaml").write_text(ALWAYS, encoding="utf-8")
    return d


def edit(rules_dir: Path, old: str, new: str) -> None:
    """Replace ``old`` with ``new`` in the rules directory's always.yaml, in one step (a new
    file renamed over it, as editors and deploy tools save): a service checking every 50 ms
    must not read it half-written (it would refuse that, rightly, and a test would see the
    wrong refusal)."""
    f = rules_dir / "always.yaml"
    tmp = f.with_name(".always.yaml.tmp")
    tmp.write_text(f.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    os.replace(tmp, f)


@pytest.fixture
def fake():
    """Factory of real HTTP servers on 127.0.0.1, closed after the test."""
    servers = []

    def make() -> FakeServer:
        s = FakeServer()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


@pytest.fixture
def crm(fake) -> FakeServer:
    s = fake()
    s.default = Reply(200, {"ok": True})
    return s


@pytest.fixture
def wecom(fake) -> FakeServer:
    s = fake()
    s.routes["/cgi-bin/webhook/send"] = wecom_robot
    return s


@pytest.fixture
def recordings(fake) -> FakeServer:
    return fake()


def make_config(tmp_path: Path, model_dir: Path | str | None, db_url: str, crm=None, wecom=None,
                **overrides) -> config_mod.Config:
    data = {
        "data_dir": str(tmp_path / "var"),
        "database": {"url": db_url},
        "model": {"path": str(model_dir) if model_dir else None, "retry_interval_s": 0.2},
        # No speech model unless a test gives one (tests/asr_standin.py, plugin/model/sensevoice_dir.py).
        "asr": {"enabled": False},
        "rules": {"path": str(HERE / "rules")},
        # Most tests use tones, which silero rightly calls non-speech; tests of the VAD
        # use synthesized speech (tests/speech.py) and set vad: silero.
        "audio": {"vad": "energy"},
        "sources": {"generic": {"secret": SECRET}},
        "fetch": {"allow_networks": ["127.0.0.0/8"], "timeout_s": 5, "max_seconds": 10},
        "worker": {"poll_interval_s": 0.05, "retry_backoff_s": 0.05, "lease_s": 30},
        "deliveries": {"poll_interval_s": 0.05, "backoff_base_s": 0.05, "backoff_max_s": 0.2,
                       "max_attempts": 4},
        "sinks": {},
    }
    if crm is not None:
        data["sinks"]["crm"] = {
            "type": "rest", "auth_header": "Bearer crm-token", "headers": {"X-Call": "{{ call.external_id }}"},
            "url": crm.url + "/api/customers/{{ call.customer_id }}/tags"}
    if wecom is not None:
        data["sinks"]["wecom"] = {"type": "wecom_robot",
                                  "url": wecom.url + "/cgi-bin/webhook/send?key=robot-key",
                                  "mentioned_list": ["supervisor01"]}
    return config_mod.load(None, overrides=config_mod._deep_merge(data, overrides))


def use_model(svc: Services, model: EmotionModel) -> None:
    """Hand ``svc`` an already loaded model, as if its loader had just loaded it."""
    svc.model.model = model
    svc.model.state, svc.model.reason = "ready", "Model is ready for inference"


def body_of(event: dict | bytes) -> bytes:
    return event if isinstance(event, bytes) else json.dumps(event).encode()


def signed(event: dict | bytes, secret: str = SECRET, signature: str | None = None) -> dict:
    """Keyword arguments that POST ``event`` to /webhooks/<source> as a signed helpdesk would."""
    body = body_of(event)
    sig = signature if signature is not None else sign(body, secret)
    return {"data": body, "headers": {"Content-Type": "application/json", "X-CallMood-Signature": sig}}


# --- integration: the app in-process (flaskr's app/client fixtures) ----------------------

@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def api_token(svc: Services, role: str = "admin", name: str | None = None) -> str:
    """A new API token with ``role`` (its plaintext), as `callmood tokens create` makes one."""
    return svc.accounts.create_token(name or f"test-{role}", role)[1]


def authed(app, role: str | None = "admin"):
    """A test client of ``app`` that sends an API token with ``role`` (None: anonymous)."""
    client = app.test_client()
    if role is not None:
        token = api_token(app.extensions["callmood"], role)
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def in_language(client, lang: str):
    """``client`` asking for pages in ``lang`` ("en", "zh-CN") as a browser does (Accept-Language):
    for a test that reads a page's words, which are in one language (plugin/web/i18n.py)."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    return client


@pytest.fixture
def app_factory(request):
    """``make(cfg, model=False, clock=None, role="admin") -> (services, client)``: the app
    for any config behind Flask's test client, optionally with the shared loaded model and
    a ManualClock; the client sends an API token with ``role`` (None: anonymous).
    No socket, no worker thread: tests drive the pipeline and the outbox themselves."""
    made = []

    def make(cfg: config_mod.Config, model: bool = False, clock: ManualClock | None = None,
             role: str | None = "admin"):
        svc = build(cfg)
        if model:
            use_model(svc, request.getfixturevalue("emotion_model"))
        if clock is not None:
            svc.clock = clock
        made.append(svc)
        return svc, authed(create_app(services=svc), role)
    yield make
    for svc in made:
        svc.close()


@pytest.fixture
def app(tmp_path, db_url, clock, app_factory):
    """The app on a fresh database (SQLite and PostgreSQL) with the test rules and a
    ManualClock; no model, no worker (as in Flask's tutorial: app, client, services)."""
    svc, client = app_factory(make_config(tmp_path, None, db_url), clock=clock)
    return client.application


@pytest.fixture
def client(app):
    """The app's test client, authenticated as an admin (an API token)."""
    return authed(app, "admin")


@pytest.fixture
def anon(app):
    """The app's test client with no credentials at all."""
    return app.test_client()


@pytest.fixture
def client_as(app):
    """``client_as("viewer")``: a test client with an API token of that role."""
    return lambda role: authed(app, role)


@pytest.fixture
def services(app) -> Services:
    return app.extensions["callmood"]


# --- e2e: the whole service over real sockets ---------------------------------------------

class Service:
    """The real service (app, worker, deliveries) serving real HTTP on 127.0.0.1."""

    def __init__(self, cfg: config_mod.Config, start_runtime: bool = True, load_model: bool = True,
                 model: EmotionModel | None = None, clock: ManualClock | None = None):
        self.cfg = cfg
        self.svc = build(cfg)
        if clock is not None:  # leases expire when the test says, not when a slow machine lets them
            self.svc.clock = clock
        if model is not None:
            use_model(self.svc, model)
        elif load_model:
            self.svc.model.try_load()
        self.app = create_app(services=self.svc)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.runtime = self.svc.runtime().start() if start_runtime else None
        self.http = requests.Session()  # an admin's API token on every request
        self.http.headers["Authorization"] = f"Bearer {api_token(self.svc, 'admin', 'e2e')}"

    def start_runtime(self) -> None:
        self.runtime = self.svc.runtime().start()

    def post_event(self, event: dict | bytes, secret: str = SECRET, source: str = "generic",
                   signature: str | None = None) -> requests.Response:
        return self.http.post(f"{self.url}/webhooks/{source}", **signed(event, secret, signature))

    def call(self, call_id: int) -> dict:
        r = self.http.get(f"{self.url}/api/calls/{call_id}")
        r.raise_for_status()
        return r.json()

    def wait_call(self, call_id: int, statuses=("analyzed", "failed"), timeout=60) -> dict:
        return wait_until(lambda: (c := self.call(call_id))["status"] in statuses and c, timeout)

    def routed(self, call: dict) -> dict[str, dict]:
        """The deliveries of the notifications a call's alerts were routed to, by sink."""
        out = {}
        for a in call["alerts"]:
            for r in a.get("routing") or []:
                if r.get("notification_id") and r["outcome"] != "suppressed":
                    n = self.http.get(f"{self.url}/api/notifications/{r['notification_id']}").json()
                    if n.get("delivery"):
                        out[n["delivery"]["sink"]] = n["delivery"]
        return out

    def wait_deliveries(self, call_id: int, timeout=30, done=("delivered", "dead")) -> dict:
        """The call once its alerts' deliveries and their routed messages are settled; the
        routed ones under ``call["routed"]`` by sink."""
        def settled():
            c = self.call(call_id)
            routed = self.routed(c)
            ds = [d for a in c["alerts"] for d in a["deliveries"]] + list(routed.values())
            return ds and all(d["status"] in done for d in ds) and {**c, "routed": routed}
        return wait_until(settled, timeout)

    def close(self):
        if self.runtime:
            self.runtime.stop()
        self.server.shutdown()
        self.http.close()
        self.svc.close()


@pytest.fixture
def service_factory(tmp_path, emotion_model):
    """Make a running service; it gets the shared loaded model unless ``load_model=False``
    (or a ``model=``) says otherwise."""
    made = []

    def make(cfg: config_mod.Config | None = None, **kw) -> Service:
        if kw.get("load_model", True) and "model" not in kw:
            kw["model"] = emotion_model
        s = Service(cfg, **kw)
        made.append(s)
        return s
    yield make
    for s in reversed(made):
        s.close()


# Every alert to the WeCom robot (sinks.wecom), at once and every time: the rules' actions
# write the CRM; people get messages through routing only.
ROUTE_ALL = "defaults: {cooldown: 0s}\nreceivers: {supervisors: {sink: wecom}}\nroutes: [{receiver: supervisors}]\n"


@pytest.fixture
def routed_rules(rules_dir) -> dict:
    """``rules=`` for make_config: the test rule (a CRM action) and ROUTE_ALL (every alert
    to the WeCom robot)."""
    (rules_dir / "routing.yaml").write_text(ROUTE_ALL, encoding="utf-8")
    return {"path": str(rules_dir)}


def routed_delivery(client, call: dict) -> dict | None:
    """The delivery of the notification a call's single alert was routed to (admin client)."""
    [alert] = call["alerts"]
    [routed] = alert["routing"]
    return client.get(f"/api/notifications/{routed['notification_id']}").json["delivery"]


def by_sink(call: dict) -> dict[str, dict]:
    """The deliveries of a call's single alert, keyed by sink."""
    [alert] = call["alerts"]
    return {d["sink"]: d for d in alert["deliveries"]}


def event(call_id: str, url: str, **extra) -> dict:
    body = {"call_id": call_id, "recording_url": url, "customer_id": "cust-42",
            "customer_phone": "+8613800000000", "agent_id": "agent-7", "queue": "support",
            "ticket_id": "T-1001"}
    body.update(extra)
    return body
