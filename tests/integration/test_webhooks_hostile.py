"""Hostile webhook bodies at the door (SQLite and PostgreSQL): each is a 400 that names
the field, nothing is stored, and a good event right after is still accepted. Also the
replay window and the clamped ``?limit=``."""

import json
import time

import pytest
from sqlalchemy import func, select

from plugin.store.tables import Call
from tests.conftest import SECRET, event, make_config, signed

URL = "http://127.0.0.1:9/r.wav"
ATTACK = "../../../admin/users/1/delete?confirm=yes#"


def post(client, body, **kw):
    return client.post("/webhooks/generic", **signed(body, **kw))


def stored(services) -> int:
    with services.sessions() as s:
        return s.execute(select(func.count(Call.id))).scalar()


def good_one_still_works(client, services, n_before):
    r = post(client, event(f"good-{n_before}", URL))
    assert r.status_code == 202, r.text
    assert stored(services) == n_before + 1


HOSTILE_FIELDS = [
    ("customer_id", ATTACK, "'/'"),
    ("customer_id", "c-1\n### 假标题 fake heading", "U+000A"),
    ("agent_id", "[点击 click](http://phish.example)", "'['"),
    ("ticket_id", "<@all>", "'<'"),
    ("queue", "finance\r\nX-Injected: 1", "U+000D"),
    ("scenario", "vip*", "'*'"),
    ("call_id", "c 1", "U+0020"),
    ("call_id", "x" * 300, "at most 128"),
    ("call_id", "..", "only dots"),
    ("customer_id", "a%2F..%2Fadmin", "'%'"),
    ("agent_id", "a\u202egnp.exe", "U+202E"),
    ("customer_phone", "+86 138\n> 级别 critical", "U+000A"),
    ("customer_phone", "<@all>", "'<'"),
    ("customer_phone", "9" * 40, "at most 32"),
    ("recording_url", "http://127.0.0.1:9\\@1.1.1.1/r.wav", "backslash"),
    ("recording_url", "http://pbx.example/r.wav\r\nX-Injected: 1", "control characters"),
    ("recording_url", "file:///etc/passwd", "must be an http(s) URL"),
]


@pytest.mark.parametrize("field,value,why", HOSTILE_FIELDS)
def test_unsafe_ids_and_phones_are_a_400_naming_the_field(client, services, field, value, why):
    r = post(client, {**event("h-1", URL), field: value})
    assert r.status_code == 400 and r.json["field"] == field and why in r.json["error"], r.json
    assert stored(services) == 0
    good_one_still_works(client, services, 0)


BODIES = [
    # field named, what the answer says, the raw body
    ("body", "nested more than 32 levels deep",
     b'{"call_id": "d-1", "recording_url": "' + URL.encode() + b'", "customer_id": "c", "x": '
     + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("body", "nested more than 32 levels deep", b"[" * 200_000),
    ("body", "nested more than 32 levels deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ("body", "too large", json.dumps(event("n-1", URL)).encode()[:-1] + b', "score": 1e999}'),
    ("body", "Infinity is not valid JSON", json.dumps(event("n-2", URL)).encode()[:-1] + b', "score": -Infinity}'),
    ("body", "NaN is not valid JSON", json.dumps(event("n-3", URL)).encode()[:-1] + b', "score": NaN}'),
    ("customer_id", "NUL", json.dumps(event("n-4", URL, customer_id="c\x00d")).encode()),
    ("crm.note", "NUL", json.dumps(event("n-5", URL, crm={"note": "hi\x00"})).encode()),
    ("tags[1]", "NUL", json.dumps(event("n-6", URL, tags=["vip", "\x00"])).encode()),
    ("x\\u0000 (the key)", "NUL", json.dumps(event("n-7", URL, **{"x\x00": 1})).encode()),
    ("note", "lone surrogate", json.dumps(event("n-8", URL)).encode()[:-1] + b', "note": "\\ud800"}'),
    ("body", "not valid JSON", b'{"call_id": "\xff\xfe"}'),
    ("body", "expected a JSON object", b'"just a string"'),
]


@pytest.mark.parametrize("field,match,body", BODIES, ids=[f"{i}-{b[1][:20]}" for i, b in enumerate(BODIES)])
def test_bodies_the_database_or_parser_cannot_take_are_a_400(client, services, field, match, body):
    r = post(client, body)
    assert r.status_code == 400, r.text
    assert r.json["field"] == field and match in r.json["error"]
    assert stored(services) == 0
    good_one_still_works(client, services, 0)


def test_a_unicode_customer_id_and_metadata_are_fine(client, services):
    r = post(client, event("u-1", URL, customer_id="客户-42", crm={"note": "很生气 😡", "n": 1.5}))
    assert r.status_code == 202
    assert client.get(f"/api/calls/{r.json['call_id']}").json["customer_id"] == "客户-42"


# --- the replay window ------------------------------------------------------------------

def test_the_replay_window_refuses_old_future_and_unstamped_events(tmp_path, db_url, app_factory):
    cfg = make_config(tmp_path, None, db_url, sources={"generic": {"secret": SECRET, "replay_tolerance_s": 300}})
    services, client = app_factory(cfg)
    now = int(time.time())
    body = json.dumps(event("r-1", URL)).encode()

    def stamped(t):
        from connectors.sources.generic import sign
        return sign(body, SECRET, timestamp=t)

    for t, why in [(now - 3600, "s ago, outside the 300s tolerance"), (now + 3600, "s in the future, outside")]:
        r = post(client, body, signature=stamped(t))
        assert r.status_code == 401 and why in r.json["error"] and "replay_tolerance_s" in r.json["error"]
    r = post(client, body)  # the plain sha256= form is not enough once the window is on
    assert r.status_code == 401 and "t=<unix seconds>" in r.json["error"]
    assert stored(services) == 0
    r = post(client, body, signature=stamped(now))
    assert r.status_code == 202
    # The same signed request replayed within the window is a duplicate: one call, one job.
    again = post(client, body, signature=stamped(now))
    assert again.status_code == 202 and again.json["status"] == "duplicate" and stored(services) == 1


# --- ?limit= ------------------------------------------------------------------------------

@pytest.mark.parametrize("path,key", [("/api/calls", "calls"), ("/api/flagged", "customers"),
                                      ("/api/notifications", "notifications")])
def test_limit_is_clamped_on_both_databases(client, services, path, key):
    for i in range(3):
        assert post(client, event(f"l-{i}", URL, customer_id=f"cust-{i}")).status_code == 202
    full = client.get(path).json[key]
    for limit, expected in [("-1", min(1, len(full))), ("0", min(1, len(full))), (str(10**9), len(full)),
                            (str(10**30), len(full)), ("abc", len(full)), ("1e3", len(full))]:
        r = client.get(f"{path}?limit={limit}")
        assert r.status_code == 200, (limit, r.text)
        assert len(r.json[key]) == expected, limit
    if key == "calls":
        assert len(client.get("/api/calls?limit=-1").json["calls"]) == 1
        assert len(client.get(f"/api/calls?limit={10**9}").json["calls"]) == 3
