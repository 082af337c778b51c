"""Customer identity against the real things beside it: a CRM stand-in (FakeServer) for
the REST lookup, CSV files on disk, the phone_lookups cache on SQLite and PostgreSQL, time
stepped with a ManualClock, and what the API shows each role."""

from __future__ import annotations

import logging

import pytest
import requests
from sqlalchemy import func, select

from plugin.flow.identity import CustomerIdentity
from plugin.store import phone_lookups
from plugin.store.tables import Call, PhoneLookup
from tests.conftest import T0, authed, make_config
from tests.helpers import Reply

PHONE = "+8613800138000"
ENCODED = "%2B8613800138000"
TOKEN = "crm-token-0123456789"


@pytest.fixture
def http():
    with requests.Session() as s:
        yield s


@pytest.fixture
def crm_api(fake):
    """The CRM's customer search: GET /api/v2/customers/by-phone/<phone> answering
    {"data": [{"id": ...}]}, with a bearer token, as a CRM stand-in that checks both."""
    server = fake()
    server.known = {PHONE: "cust-7"}

    def answer(rec):
        if rec.headers.get("Authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"error": "unauthorized"})
        phone = requests.utils.unquote(rec.path.split("?")[0].rsplit("/", 1)[1])
        found = server.known.get(phone)
        return Reply(200, {"data": [{"id": found, "name": "someone"}] if found else []})
    server.default = answer
    return server


@pytest.fixture
def make(tmp_path, db_url, clock, app_factory, monkeypatch):
    """``make(lookup=..., **identity) -> (services, admin client)`` on a fresh database
    (SQLite and PostgreSQL) with a ManualClock."""
    monkeypatch.setenv("CRM_TOKEN", TOKEN)

    def build(lookup=None, **identity):
        cfg = make_config(tmp_path, None, db_url, identity={"lookup": lookup, **identity})
        return app_factory(cfg, clock=clock)
    return build


def rest_lookup(server, **more):
    return {"type": "rest", "url": server.url + "/api/v2/customers/by-phone/{phone}?fields=id",
            "headers": {"Authorization": "Bearer ${CRM_TOKEN}"}, "id_field": "data.0.id",
            "timeout_s": 2, **more}


_n = 0


def add_call(svc, phone: str | None = PHONE, customer_id: str | None = None) -> int:
    """A stored call as a source that gives only the phone number leaves it."""
    global _n
    _n += 1
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id=f"call-{_n}", recording_url="http://127.0.0.1:9/r.wav",
                    customer_id=customer_id, customer_phone=phone, event={}, received_at=T0)
        s.add(call)
        s.flush()
        return call.id


def stored(svc, call_id: int) -> tuple[str | None, str | None]:
    with svc.sessions() as s:
        call = s.get(Call, call_id)
        return call.customer_id, call.identity


def cached(svc) -> dict[str, str | None]:
    with svc.sessions() as s:
        return {r.phone: r.customer_id for r in s.execute(select(PhoneLookup)).scalars()}


# --- REST ------------------------------------------------------------------------------------

def test_the_crm_is_asked_as_documented_and_the_id_lands_on_the_call(make, crm_api, http, caplog):
    svc, client = make(rest_lookup(crm_api))
    call_id = add_call(svc, phone="138 0013 8000")  # as a source kept it: the CN default region applies

    with caplog.at_level(logging.INFO):
        assert svc.identity.resolve(call_id, http) == "matched"

    [req] = crm_api.requests
    assert req.method == "GET" and req.path == f"/api/v2/customers/by-phone/{ENCODED}?fields=id"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}" and req.headers["Accept"] == "application/json"
    assert stored(svc, call_id) == ("cust-7", "matched")
    body = client.get(f"/api/calls/{call_id}").json
    assert (body["customer_id"], body["identity"]) == ("cust-7", "matched")
    assert "13800138000" not in caplog.text and TOKEN not in caplog.text


def test_a_hit_is_cached_for_cache_s_then_asked_again(make, crm_api, http, clock):
    svc, _ = make(rest_lookup(crm_api), cache_s=600)
    first, second, third = add_call(svc), add_call(svc), add_call(svc)

    assert svc.identity.resolve(first, http) == "matched"
    clock.advance(seconds=599)
    assert svc.identity.resolve(second, http) == "matched"
    assert len(crm_api.requests) == 1 and stored(svc, second) == ("cust-7", "matched")  # from the cache

    crm_api.known[PHONE] = "cust-8"  # the CRM merged two records meanwhile
    clock.advance(seconds=1)
    assert svc.identity.resolve(third, http) == "matched"
    assert len(crm_api.requests) == 2 and stored(svc, third) == ("cust-8", "matched")
    assert cached(svc) == {PHONE: "cust-8"}


def test_a_miss_is_cached_for_the_shorter_miss_cache_s(make, crm_api, http, clock):
    svc, _ = make(rest_lookup(crm_api))  # defaults: a day for ids, an hour for misses
    crm_api.known.clear()
    calls = [add_call(svc) for _ in range(3)]

    assert svc.identity.resolve(calls[0], http) == "unmatched"
    assert cached(svc) == {PHONE: None}
    clock.advance(minutes=59)
    assert svc.identity.resolve(calls[1], http) == "unmatched"
    assert len(crm_api.requests) == 1

    crm_api.known[PHONE] = "cust-new"  # created in the CRM during the first call
    clock.advance(minutes=1)
    assert svc.identity.resolve(calls[2], http) == "matched"
    assert len(crm_api.requests) == 2 and stored(svc, calls[2]) == ("cust-new", "matched")
    assert stored(svc, calls[0]) == (None, "unmatched")


def test_a_404_is_no_such_customer(make, fake, http):
    crm = fake()  # answers 404 to everything
    svc, _ = make(rest_lookup(crm, id_field="id"))
    call_id = add_call(svc)
    assert svc.identity.resolve(call_id, http) == "unmatched"
    assert stored(svc, call_id) == (None, "unmatched") and cached(svc) == {PHONE: None}


@pytest.mark.parametrize("reply", [
    Reply(503, {"error": "maintenance"}),
    Reply(500, b"<html>oops</html>"),
    Reply(401, {"error": "token expired"}),
    Reply(200, b"<html>a login page</html>"),
    Reply(200, {"customers": [{"id": "cust-7"}]}),  # another shape than id_field says
    Reply(302, b"", {"Location": "/login"}),
    Reply(200, {"data": [{"id": "cust-7"}]}, delay_s=3),  # past timeout_s
], ids=["503", "500", "401", "html", "other-shape", "redirect", "timeout"])
def test_a_failed_lookup_is_not_cached_and_the_call_is_marked_lookup_failed(make, fake, http, caplog, reply):
    crm = fake()
    crm.default = reply
    svc, client = make(rest_lookup(crm, timeout_s=1))
    call_id = add_call(svc)

    with caplog.at_level(logging.WARNING, logger="plugin.flow.identity"):
        assert svc.identity.resolve(call_id, http) == "lookup_failed"
    assert stored(svc, call_id) == (None, "lookup_failed") and cached(svc) == {}
    [warning] = [r for r in caplog.records if r.name == "plugin.flow.identity"]
    assert "customer lookup for +86138****8000 failed" in warning.getMessage()
    assert "13800138000" not in caplog.text and TOKEN not in caplog.text

    crm.default = Reply(200, {"data": [{"id": "cust-7"}]})  # the CRM is back: asked again
    assert svc.identity.resolve(call_id, http) == "matched"
    assert stored(svc, call_id) == ("cust-7", "matched") and cached(svc) == {PHONE: "cust-7"}


def test_an_unreachable_crm_is_a_failed_lookup_and_its_error_masks_the_number(make, http, caplog):
    from tests.helpers import free_port
    svc, _ = make({"type": "rest", "url": f"http://127.0.0.1:{free_port()}/c/{{phone}}?phone={{phone}}"})
    call_id = add_call(svc)
    with caplog.at_level(logging.WARNING):
        assert svc.identity.resolve(call_id, http) == "lookup_failed"
    assert "ConnectionError" in caplog.text and "13800138000" not in caplog.text


def test_a_redirect_is_not_followed_so_the_token_stays_with_the_crm(make, fake, http):
    elsewhere = fake()
    elsewhere.default = Reply(200, {"data": [{"id": "cust-evil"}]})
    crm = fake()
    crm.default = Reply(307, b"", {"Location": elsewhere.url + "/steal"})
    svc, _ = make(rest_lookup(crm))
    call_id = add_call(svc)
    assert svc.identity.resolve(call_id, http) == "lookup_failed"
    assert elsewhere.requests == [] and stored(svc, call_id) == (None, "lookup_failed")


@pytest.mark.parametrize("hostile", [
    "../../admin", "cust-7\r\nX-Injected: 1", "[urgent](https://evil.example/phish)", "<@all>",
    "x" * 500, {"$ne": None}, True, 1.5,
])
def test_a_hostile_crm_answer_is_refused_not_stored_and_not_cached(make, fake, http, caplog, hostile):
    crm = fake()
    crm.default = Reply(200, {"data": [{"id": hostile}]})
    svc, client = make(rest_lookup(crm))
    call_id = add_call(svc)
    with caplog.at_level(logging.WARNING):
        assert svc.identity.resolve(call_id, http) == "lookup_failed"
    assert stored(svc, call_id) == (None, "lookup_failed") and cached(svc) == {}
    assert "not an id" in caplog.text
    if isinstance(hostile, str):
        assert hostile not in caplog.text  # never quoted: the log is read by people and tools


def test_a_huge_answer_is_refused(make, fake, http):
    crm = fake()
    crm.default = Reply(200, b'{"id": "cust-7", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    svc, _ = make(rest_lookup(crm, id_field="id"))
    call_id = add_call(svc)
    assert svc.identity.resolve(call_id, http) == "lookup_failed"


def test_a_given_customer_id_is_kept_and_no_lookup_is_made(make, crm_api, http):
    svc, _ = make(rest_lookup(crm_api))
    call_id = add_call(svc, customer_id="cust-given")
    assert svc.identity.resolve(call_id, http) == "given"
    assert stored(svc, call_id) == ("cust-given", "given") and crm_api.requests == []
    # A re-analysis of a matched call keeps "matched" (its id is now set, not given).
    matched = add_call(svc)
    svc.identity.resolve(matched, http)
    assert svc.identity.resolve(matched, http) == "matched" and stored(svc, matched) == ("cust-7", "matched")


@pytest.mark.parametrize("phone", [None, "anonymous", "sip:agent-7@pbx", "12"])
def test_no_usable_number_is_unmatched_without_asking(make, crm_api, http, phone):
    svc, _ = make(rest_lookup(crm_api))
    call_id = add_call(svc, phone=phone)
    assert svc.identity.resolve(call_id, http) == "unmatched"
    assert crm_api.requests == [] and stored(svc, call_id) == (None, "unmatched")


def test_without_a_lookup_calls_without_an_id_are_unmatched(make, http):
    svc, _ = make()
    given, only_phone = add_call(svc, customer_id="cust-1"), add_call(svc)
    assert svc.identity.resolve(given, http) == "given"
    assert svc.identity.resolve(only_phone, http) == "unmatched"
    assert svc.identity.resolve(10_000, http) is None  # no such call: nothing to do


def test_cache_writes_race_safely_and_expired_answers_and_forgotten_customers_go(make, crm_api, http, clock):
    svc, _ = make(rest_lookup(crm_api), cache_s=600, miss_cache_s=60)
    with svc.sessions.begin() as s:  # two workers storing the same number: both succeed
        phone_lookups.put(s, PHONE, "cust-7", clock.now(s))
    with svc.sessions.begin() as s:
        phone_lookups.put(s, PHONE, "cust-7", clock.now(s))
        phone_lookups.put(s, "+8613900000000", None, clock.now(s))
        phone_lookups.put(s, "+8613700000000", "cust-9", clock.now(s))
    clock.advance(seconds=61)
    assert svc.identity.purge_expired() == 1  # the miss
    clock.advance(seconds=600)
    assert svc.identity.purge_expired() == 2 and cached(svc) == {}

    with svc.sessions.begin() as s:
        phone_lookups.put(s, PHONE, "cust-7", clock.now(s))
        phone_lookups.put(s, "+8613700000000", "cust-9", clock.now(s))
    with svc.sessions.begin() as s:
        assert phone_lookups.forget(s, "cust-7") == 1
    assert cached(svc) == {"+8613700000000": "cust-9"}


# --- CSV -------------------------------------------------------------------------------------

def write(path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_a_csv_file_is_read_with_numbers_normalised_and_reread_when_it_changes(make, tmp_path, http, caplog):
    book = tmp_path / "customers.csv"
    write(book, "\ufeffPhone,Customer_ID\n"  # a spreadsheet's byte-order mark and capitals
                "138 0013 8000,cust-7\n"
                "0086 139 0000 0000,cust-8\n"
                "not a phone,cust-x\n"
                "+8613700000000,../admin\n"
                "+8613600000000,cust-a\n"
                "136-0000-0000,cust-b\n")  # the same number for two customers: a switchboard
    svc, client = make({"type": "csv", "path": str(book)})
    a, b, c, d, shared = (add_call(svc), add_call(svc, "+8613900000000"), add_call(svc, "+8613700000000"),
                          add_call(svc, "+8613500000000"), add_call(svc, "+8613600000000"))
    with caplog.at_level(logging.INFO, logger="plugin.flow.lookups"):
        assert [svc.identity.resolve(i, http) for i in (a, b, c, d, shared)] == [
            "matched", "matched", "unmatched", "unmatched", "unmatched"]
    assert stored(svc, a) == ("cust-7", "matched") and stored(svc, b) == ("cust-8", "matched")
    assert "2 numbers from" in caplog.text and "2 lines skipped" in caplog.text and "(lines 4, 5)" in caplog.text
    assert "1 numbers listed for several customers" in caplog.text
    assert "13800138000" not in caplog.text and "cust-x" not in caplog.text
    assert cached(svc) == {}  # a file is not cached in the database: an edit applies at once

    write(book, "phone,customer_id\n+8613500000000,cust-5\n")  # edited
    again = add_call(svc, "+8613500000000")
    assert svc.identity.resolve(again, http) == "matched" and stored(svc, again) == ("cust-5", "matched")
    assert svc.identity.resolve(add_call(svc), http) == "unmatched"  # cust-7's line is gone


def test_a_csv_that_breaks_keeps_the_last_good_version(make, tmp_path, http, caplog):
    book = tmp_path / "customers.csv"
    write(book, "phone,customer_id\n13800138000,cust-7\n")
    svc, _ = make({"type": "csv", "path": str(book)})
    assert svc.identity.resolve(add_call(svc), http) == "matched"

    write(book, "number;id\n13800138000;cust-8\n")  # the wrong columns
    with caplog.at_level(logging.WARNING):
        assert svc.identity.resolve(add_call(svc), http) == "matched"
        book.unlink()
        last = add_call(svc)
        assert svc.identity.resolve(last, http) == "matched" and stored(svc, last) == ("cust-7", "matched")
    assert "columns phone and customer_id" in caplog.text and "the version read before stays" in caplog.text


def test_a_csv_that_was_never_readable_is_a_failed_lookup(make, tmp_path, http):
    svc, _ = make({"type": "csv", "path": str(tmp_path / "missing.csv")})
    call_id = add_call(svc)
    assert svc.identity.resolve(call_id, http) == "lookup_failed"


def test_the_csv_is_parsed_once_per_change_for_the_whole_process(make, tmp_path, http, monkeypatch):
    book = tmp_path / "customers.csv"
    write(book, "phone,customer_id\n13800138000,cust-7\n")
    svc, _ = make({"type": "csv", "path": str(book)}, default_region="CN")
    assert svc.identity.book is svc.identity.book  # each CustomerIdentity built on use shares the parsed file
    loads = []
    original = type(svc.identity.book)._load
    monkeypatch.setattr(type(svc.identity.book), "_load", lambda self: loads.append(1) or original(self))
    for _ in range(3):
        assert svc.identity.resolve(add_call(svc), http) == "matched"
    assert loads == [1]


def test_the_region_reads_csv_numbers_and_call_numbers_alike(make, tmp_path, http):
    book = tmp_path / "customers.csv"
    write(book, "phone,customer_id\n(202) 555-0123,cust-us\n")
    svc, _ = make({"type": "csv", "path": str(book)}, default_region="US")
    assert svc.identity.resolve(add_call(svc, "202-555-0123"), http) == "matched"
    assert svc.identity.resolve(add_call(svc, "+1 202 555 0123"), http) == "matched"


# --- the API ---------------------------------------------------------------------------------

def test_identity_is_in_the_api_filterable_and_phones_stay_masked_for_viewers(make, crm_api, http):
    svc, client = make(rest_lookup(crm_api))
    crm_api.known["+8613900000000"] = "cust-9"
    given = add_call(svc, customer_id="cust-1")
    unmatched = add_call(svc, "+8613500000000")
    matched = add_call(svc, "+8613900000000")
    waiting = add_call(svc)  # not analysed yet: no identity
    for call_id in (given, unmatched, matched):
        svc.identity.resolve(call_id, http)

    calls = client.get("/api/calls").json["calls"]
    assert {c["id"]: c["identity"] for c in calls} == {given: "given", unmatched: "unmatched",
                                                       matched: "matched", waiting: None}
    only = client.get("/api/calls?identity=unmatched").json["calls"]
    assert [(c["id"], c["customer_id"], c["customer_phone"]) for c in only] == [
        (unmatched, None, "+8613500000000")]
    assert [c["id"] for c in client.get("/api/calls?identity=matched&status=received").json["calls"]] == [matched]
    assert client.get("/api/calls?identity=nonsense").json["calls"] == []

    viewer = authed(client.application, "viewer")
    seen = viewer.get("/api/calls?identity=unmatched").json["calls"]
    assert [(c["identity"], c["customer_phone"]) for c in seen] == [("unmatched", "+86135****0000")]
    one = viewer.get(f"/api/calls/{matched}").json
    assert (one["identity"], one["customer_id"], one["customer_phone"]) == ("matched", "cust-9", "+86139****0000")


def test_services_build_an_identity_with_the_swapped_clock(make, clock):
    svc, _ = make()
    ident = svc.identity
    assert isinstance(ident, CustomerIdentity) and ident.clock is clock
    assert ident.rest is None and ident.book is None
    with svc.sessions() as s:
        assert s.execute(select(func.count()).select_from(PhoneLookup)).scalar() == 0


# --- through the pipeline ----------------------------------------------------------------------

def test_an_analysis_finds_the_customer_first_and_alerts_carry_the_id(tmp_path, model_dir, sqlite_url, clock,
                                                                      app_factory, crm_api, crm, wecom, recordings,
                                                                      monkeypatch):
    """The pipeline resolves the call before the rules see it: the alert and the CRM write-back
    name the matched customer; with the CRM down the call is analysed all the same."""
    from tests.helpers import make_audio
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    cfg = make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom,
                      identity={"lookup": rest_lookup(crm_api)})
    svc, client = app_factory(cfg, model=True, clock=clock)
    url = recordings.serve_file("/a.wav", make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 4.0))
    matched, failing = add_call(svc), add_call(svc, "+8613900000000")
    with svc.sessions.begin() as s:
        for call_id in (matched, failing):
            s.get(Call, call_id).recording_url = url
            svc.jobs.enqueue(s, call_id)

    svc.pipeline().analyze_call(matched)
    body = client.get(f"/api/calls/{matched}").json
    assert (body["status"], body["identity"], body["customer_id"]) == ("analyzed", "matched", "cust-7")
    [alert] = body["alerts"]
    [delivery] = [d for d in alert["deliveries"] if d["sink"] == "crm"]
    assert delivery["payload"]["url"].endswith("/api/customers/cust-7/tags")

    crm_api.default = Reply(503, {"error": "down"})
    svc.pipeline().analyze_call(failing)
    body = client.get(f"/api/calls/{failing}").json
    assert (body["status"], body["identity"], body["customer_id"]) == ("analyzed", "lookup_failed", None)
