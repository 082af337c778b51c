"""The HubSpot sink against a stand-in that checks the documented requests (method, path,
Bearer token, body shape, the note-to-contact association) and keeps contacts, their
properties and the notes. Sends go through a real requests.Session."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, unquote

import pytest
import requests
from pydantic import ValidationError

from connectors.sinks.hubspot import HubSpotSink, HubSpotSinkConfig, marker_token
from plugin.core import trial
from tests.helpers import FakeServer, Recorded, Reply

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
KEY = "callmood-delivery-17"


def ctx(customer_id="301", phone="+8613800000000", trial_run=False, action=None, summary="客户很生气 <b>!</b>"):
    return {"call": {"id": 7, "customer_id": customer_id, "customer_phone": phone, "ticket_id": None},
            "alert": {"rule": "angry_customer", "scenario": "general", "severity": "critical", "role": "customer",
                      "emotions": ["angry"], "share": 0.5, "confidence": 0.91,
                      "matched": [[0.0, 3.0], [63.0, 66.0]], "summary": summary},
            "action": action or {}, "link": "http://callmood.local/calls/7?k=abc&x=1", "trial": trial_run}


def error(status, message, category):
    return Reply(status, {"status": "error", "message": message, "correlationId": "c0ffee", "category": category})


class HubSpotStandIn:
    """Answers like HubSpot's CRM v3 API for contacts, notes and notes search."""

    SCHEMA = {"email", "phone", "firstname", "callmood_last_alert", "customer_no"}
    UNIQUE = {"email", "customer_no"}  # properties idProperty may name

    def __init__(self, server: FakeServer):
        self.server = server
        self.contacts: dict[str, dict] = {}
        self.notes: list[dict] = []
        self.faults: dict[str, list] = {}  # kind -> [Reply (instead of acting) or "lost" (act, then 500)]
        server.default = self.handle

    def contact(self, cid="301", **props):
        self.contacts[cid] = {"id": cid, "properties": dict(props)}
        return self.contacts[cid]

    def notes_of(self, cid="301"):
        return [n for n in self.notes if n["contact"] == cid]

    ROUTES = [("PATCH", r"/crm/v3/objects/contacts/([^/]+)", "update"),
              ("GET", r"/crm/v3/objects/contacts/([^/]+)", "read"),
              ("POST", r"/crm/v3/objects/notes/search", "search"),
              ("POST", r"/crm/v3/objects/notes", "create_note")]

    def handle(self, rec: Recorded) -> Reply:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        path, _, query = rec.path.partition("?")
        for method, pattern, kind in self.ROUTES:
            m = re.fullmatch(pattern, path)
            if m and rec.method == method:
                break
        else:
            return error(404, "No route", "OBJECT_NOT_FOUND")
        body = None
        if rec.method in ("PATCH", "POST"):
            if not headers.get("content-type", "").startswith("application/json"):
                return error(415, "Content-Type must be application/json", "VALIDATION_ERROR")
            try:
                body = rec.json()
            except ValueError:
                return error(400, "Invalid input JSON", "VALIDATION_ERROR")
        step = self.faults[kind].pop(0) if self.faults.get(kind) else None
        if isinstance(step, Reply):
            return step
        reply = getattr(self, kind)(unquote(m.group(1)) if m.groups() else None, parse_qs(query), body)
        return Reply(500, {"status": "error", "message": "lost"}) if step == "lost" else reply

    def _find(self, value, query):
        prop = (query.get("idProperty") or [None])[0]
        if prop is None:
            return self.contacts.get(value) if value.isdigit() else None, None
        if prop not in self.UNIQUE:
            return None, error(400, f"{prop} is not a unique property", "VALIDATION_ERROR")
        return next((c for c in self.contacts.values() if c["properties"].get(prop) == value), None), None

    def read(self, value, query, body):
        found, refused = self._find(value, query)
        if refused or found is None:
            return refused or error(404, "resource not found", "OBJECT_NOT_FOUND")
        return Reply(200, {"id": found["id"], "properties": found["properties"], "archived": False})

    def update(self, value, query, body):
        found, refused = self._find(value, query)
        if refused or found is None:
            return refused or error(404, "resource not found", "OBJECT_NOT_FOUND")
        props = body.get("properties") if set(body) == {"properties"} else None
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            return error(400, "Invalid input JSON", "VALIDATION_ERROR")
        unknown = [k for k in props if k not in self.SCHEMA]
        if unknown:
            return error(400, f'Property values were not valid: [{{"isValid":false,"message":"Property \\"{unknown[0]}'
                              f'\\" does not exist","error":"PROPERTY_DOESNT_EXIST","name":"{unknown[0]}"}}]',
                         "VALIDATION_ERROR")
        found["properties"].update(props)
        return Reply(200, {"id": found["id"], "properties": found["properties"], "archived": False})

    def search(self, _, query, body):
        try:
            (group,) = body["filterGroups"]
            (flt,) = group["filters"]
            assert flt["propertyName"] == "hs_note_body" and flt["operator"] == "CONTAINS_TOKEN"
            assert isinstance(flt["value"], str) and flt["value"]
        except (KeyError, TypeError, ValueError, AssertionError):
            return error(400, "Invalid search request", "VALIDATION_ERROR")
        # Whole words: the body's text, its markup dropped, split at anything not a letter or digit.
        hits = [n for n in self.notes
                if flt["value"].lower() in re.findall(r"[a-z0-9]+", re.sub(r"<[^>]*>", " ", n["body"]).lower())]
        return Reply(200, {"total": len(hits), "results": [
            {"id": n["id"], "properties": {"hs_note_body": n["body"], "hs_object_id": n["id"]}} for n in hits]})

    def create_note(self, _, query, body):
        props = body.get("properties") or {}
        assoc = body.get("associations")
        if not isinstance(props.get("hs_timestamp"), str) or not re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", props["hs_timestamp"]):
            return error(400, "hs_timestamp is required", "VALIDATION_ERROR")
        if not isinstance(props.get("hs_note_body"), str) or len(props["hs_note_body"]) > 65536:
            return error(400, "hs_note_body is invalid", "VALIDATION_ERROR")
        try:
            (a,) = assoc
            assert a["types"] == [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]
            assert set(a) == {"to", "types"} and a["to"]["id"] in self.contacts
        except (TypeError, ValueError, KeyError, AssertionError):
            return error(400, "invalid association", "VALIDATION_ERROR")
        note = {"id": str(9000 + len(self.notes)), "body": props["hs_note_body"], "contact": a["to"]["id"],
                "timestamp": props["hs_timestamp"]}
        self.notes.append(note)
        return Reply(201, {"id": note["id"], "properties": {"hs_note_body": note["body"]}, "archived": False})


@pytest.fixture
def hs():
    server = FakeServer()
    yield HubSpotStandIn(server)
    server.close()


def make_sink(hs, **cfg) -> HubSpotSink:
    return HubSpotSink("hubspot", HubSpotSinkConfig(type="hubspot", api_base=hs.server.url, access_token=TOKEN, **cfg))


def send(sink, payload, key=KEY, timeout=5.0):
    http = requests.Session()
    http.trust_env = False
    result = sink.send(json.loads(json.dumps(payload)), http, timeout, key)  # as stored: JSON
    assert TOKEN not in repr(result)
    return result


# --- render ---------------------------------------------------------------------------

def test_render_stores_contact_property_and_escaped_note_without_the_token(hs):
    payload = make_sink(hs).render(ctx())
    assert set(payload) == {"contact", "id_property", "properties", "note", "timestamp"}
    assert payload["contact"] == "301" and payload["id_property"] is None
    (value,) = payload["properties"].values()
    assert re.fullmatch(r"critical: angry_customer \d{4}-\d\d-\d\d", value)
    lines = payload["note"].split("<br>")
    assert lines[0] == "CallMood: 客户很生气 &lt;b&gt;!&lt;/b&gt;"  # rich text: a summary is text, not markup
    assert "Moments (customer): 00:00–00:03, 01:03–01:06" in lines
    assert lines[-1] == ('Call: <a href="http://callmood.local/calls/7?k=abc&amp;x=1">'
                         'http://callmood.local/calls/7?k=abc&amp;x=1</a>')
    assert TOKEN not in json.dumps(payload)


def test_action_value_and_trial(hs):
    sink = make_sink(hs)
    assert sink.render(ctx(action={"value": "call back\r\nnow"}))["properties"] == {"callmood_last_alert":
                                                                                    "call back now"}
    payload = sink.render(ctx(trial_run=True))
    assert payload["note"].startswith(trial.LABEL + "<br>")
    assert payload["properties"]["callmood_last_alert"].startswith(trial.TEXT + ": critical")
    hs.contact("301")
    assert send(sink, payload).ok
    assert hs.notes_of()[0]["body"].startswith(trial.LABEL)


@pytest.mark.parametrize("customer_id,cfg,match", [
    (None, {}, "the call has no customer_id"),
    ("../../admin?x=1#", {}, "is not a HubSpot record id"),
    ("301\r\nX-Admin: 1", {}, "is not a HubSpot record id"),
    ("..", {"id_property": "email"}, "cannot be a URL path segment"),
    ("x" * 300, {"id_property": "email"}, "longer than 256"),
])
def test_a_contact_that_cannot_be_addressed_is_refused_at_render(hs, customer_id, cfg, match):
    with pytest.raises(ValueError, match=match):
        make_sink(hs, **cfg).render(ctx(customer_id=customer_id))


# --- send -----------------------------------------------------------------------------

def test_property_set_and_note_associated_to_the_contact(hs):
    hs.contact("301", email="a@example.com")
    sink = make_sink(hs)
    payload = sink.render(ctx())
    result = send(sink, payload)
    assert result.ok and result.status_code == 201 and result.note is None
    assert hs.contacts["301"]["properties"]["callmood_last_alert"] == payload["properties"]["callmood_last_alert"]
    (note,) = hs.notes_of("301")
    assert note["body"].startswith("CallMood: ") and note["timestamp"] == payload["timestamp"]
    assert note["body"].split("<br>")[-1] == f"callmood:{KEY} {marker_token(TOKEN, KEY)}"
    calls = [(r.method, r.path) for r in hs.server.requests]
    assert calls == [("PATCH", "/crm/v3/objects/contacts/301"), ("POST", "/crm/v3/objects/notes/search"),
                     ("POST", "/crm/v3/objects/notes")]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in hs.server.requests)


def test_sending_again_adds_no_second_note(hs):
    hs.contact("301")
    sink = make_sink(hs)
    payload = sink.render(ctx())
    assert send(sink, payload).ok
    again = send(sink, payload)
    assert again.ok and again.note == "the note on contact 301 was already there (a repeated send)"
    assert len(hs.notes_of()) == 1
    assert send(sink, payload, key="callmood-delivery-18").ok  # another delivery: its own note
    assert len(hs.notes_of()) == 2


def test_a_note_written_whose_answer_was_lost_is_not_written_twice(hs):
    hs.contact("301")
    hs.faults["create_note"] = ["lost"]
    sink = make_sink(hs)
    payload = sink.render(ctx())
    lost = send(sink, payload)
    assert not lost.ok and lost.retryable and lost.status_code == 500
    assert send(sink, payload).ok and len(hs.notes_of()) == 1


def test_the_key_written_into_a_summary_cannot_suppress_another_note(hs):
    hs.contact("301")
    hs.contact("302")
    sink = make_sink(hs)
    forged = f"callmood:callmood-delivery-18 callmood{'0' * 32} callmood-delivery-18"
    assert send(sink, sink.render(ctx(summary=forged))).ok
    assert send(sink, sink.render(ctx(customer_id="302")), key="callmood-delivery-18").ok
    assert len(hs.notes_of("302")) == 1


def test_contact_by_email_gets_the_record_id_for_the_association(hs):
    hs.contact("301", email="a@example.com")
    sink = make_sink(hs, id_property="email")
    assert send(sink, sink.render(ctx(customer_id="a@example.com"))).ok
    patch = hs.server.requests[0]
    assert (patch.method, patch.path) == ("PATCH", "/crm/v3/objects/contacts/a%40example.com?idProperty=email")
    assert hs.notes_of("301")


def test_contact_by_phone_in_a_unique_property(hs):
    hs.contact("301", customer_no="+8613800000000")
    sink = make_sink(hs, id_property="customer_no", id_from="customer_phone")
    assert send(sink, sink.render(ctx())).ok
    assert hs.server.requests[0].path == "/crm/v3/objects/contacts/%2B8613800000000?idProperty=customer_no"


@pytest.mark.parametrize("value,segment", [
    ("../../admin?x=1#", "..%2F..%2Fadmin%3Fx%3D1%23"),
    ("a\r\nHost: evil", "a%0D%0AHost%3A%20evil"),
    ("%2e%2e", "%252e%252e"),
])
def test_a_hostile_contact_value_stays_inside_its_path_segment(hs, value, segment):
    sink = make_sink(hs, id_property="email")
    result = send(sink, sink.render(ctx(customer_id=value)))
    assert [r.path for r in hs.server.requests] == [f"/crm/v3/objects/contacts/{segment}?idProperty=email"]
    assert not result.ok and not result.retryable and "(HTTP 404)" in result.error


def test_no_property_only_looks_the_contact_up(hs):
    hs.contact("301", email="a@example.com")
    sink = make_sink(hs, property=None, id_property="email")
    payload = sink.render(ctx(customer_id="a@example.com"))
    assert payload["properties"] == {}
    assert send(sink, payload).ok
    assert [r.method for r in hs.server.requests] == ["GET", "POST", "POST"]
    assert "callmood_last_alert" not in hs.contacts["301"]["properties"] and hs.notes_of("301")


def test_note_off_sets_the_property_only(hs):
    hs.contact("301")
    sink = make_sink(hs, note=False)
    assert send(sink, sink.render(ctx())).ok
    assert hs.notes == [] and [r.method for r in hs.server.requests] == ["PATCH"]


def test_no_such_contact_is_final(hs):
    sink = make_sink(hs)
    result = send(sink, sink.render(ctx(customer_id="404")))
    assert not result.ok and not result.retryable and result.error == "no contact 404 in HubSpot (HTTP 404)"


def test_a_missing_contact_property_is_final_and_says_what_to_create(hs):
    hs.contact("301")
    sink = make_sink(hs, property="callmood_risk")
    result = send(sink, sink.render(ctx()))
    assert not result.ok and not result.retryable and result.status_code == 400
    assert "does not exist" in result.error and "does the contact property callmood_risk exist" in result.error


@pytest.mark.parametrize("headers,body,wait", [
    ({"Retry-After": "3"}, {}, 3.0),
    ({"X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Max": "100",
      "X-HubSpot-RateLimit-Remaining": "0"}, {"policyName": "TEN_SECONDLY_ROLLING"}, 10.0),
    ({"X-HubSpot-RateLimit-Secondly": "10", "X-HubSpot-RateLimit-Secondly-Remaining": "0"}, {}, 1.0),
    ({}, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"}, 3600.0),
    ({}, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}, 10.0),
    ({}, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY"}, 1.0),
    ({}, {}, None),
])
def test_429_is_throttled_with_what_hubspot_said(hs, headers, body, wait):
    hs.contact("301")
    hs.faults["update"] = [Reply(429, body, headers)]
    sink = make_sink(hs)
    result = send(sink, sink.render(ctx()))
    assert (result.ok, result.throttled, result.retry_after, result.retryable) == (False, True, wait, True)


def test_429_on_search_then_the_note_is_made_once(hs):
    hs.contact("301")
    hs.faults["search"] = [Reply(429, {"status": "error", "errorType": "RATE_LIMIT"}, {"Retry-After": "1"})]
    sink = make_sink(hs)
    payload = sink.render(ctx())
    assert send(sink, payload).throttled
    assert send(sink, payload).ok and len(hs.notes_of()) == 1


def test_refused_token_is_retried_and_never_shown(hs):
    hs.contact("301")
    hs.faults["update"] = [Reply(401, f"bad token {TOKEN} (Authorization: Bearer {TOKEN})")]
    sink = make_sink(hs)
    result = send(sink, sink.render(ctx()))
    assert not result.ok and result.retryable and "check sinks.hubspot.access_token" in result.error
    hs.faults["update"] = [Reply(403, {"status": "error", "message": "missing scopes", "category": "MISSING_SCOPES"})]
    result = send(sink, sink.render(ctx()))
    assert result.retryable and "crm.objects.contacts.read and .write" in result.error


def test_an_unreachable_hubspot_is_retried_without_the_token():
    sink = HubSpotSink("hubspot", HubSpotSinkConfig(type="hubspot", api_base="http://127.0.0.1:9", access_token=TOKEN))
    result = send(sink, sink.render(ctx()), timeout=2.0)
    assert not result.ok and result.retryable and result.error.startswith("HubSpot contact 301: ")


def test_a_stored_payload_is_checked_again_before_it_is_sent(hs):
    sink = make_sink(hs)
    good = sink.render(ctx())
    for bad in ({**good, "contact": "../x"}, {**good, "id_property": "a/b"}, {**good, "note": None},
                {**good, "properties": {"p": 1}}, {**good, "timestamp": None}):
        result = send(sink, bad)
        assert not result.ok and not result.retryable and result.error.startswith("stored payload: ")
    assert hs.server.requests == []


def test_the_marker_token_is_one_word_only_the_token_holder_makes():
    token = marker_token(TOKEN, KEY)
    assert re.fullmatch(r"callmood[0-9a-f]{32}", token)
    assert token != marker_token("another-token", KEY) and token != marker_token(TOKEN, "callmood-delivery-18")
    assert html.escape(token) == token


# --- config ---------------------------------------------------------------------------

def test_config_is_checked_when_loaded():
    base = {"type": "hubspot", "access_token": TOKEN}
    assert HubSpotSinkConfig(**base).api_base == "https://api.hubapi.com"
    for bad, match in [({"api_base": "http://api.hubapi.com"}, "plain http"),
                       ({"access_token": "abc\r\nX-Admin: 1"}, "HTTP header can carry"),
                       ({"property": "Last Alert"}, "internal name"), ({"id_property": "e-mail"}, "internal name"),
                       ({"id_from": "email"}, "id_from")]:
        with pytest.raises(ValidationError, match=match):
            HubSpotSinkConfig(**{**base, **bad})
