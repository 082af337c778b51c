"""The Zendesk sink against a stand-in that checks the documented requests (method, path,
API-token auth, body shape) and keeps a ticket's state: tags as a set, comments, status,
follow-ups, the requester's tags. Sends go through a real requests.Session."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import ValidationError

from connectors.sinks.zendesk import TRIAL_TAG, ZendeskSink, ZendeskSinkConfig, zendesk_tag
from plugin.core import trial
from tests.helpers import FakeServer, Recorded, Reply

EMAIL, TOKEN = "agent@example.com", "zd-s3cret-token-value"
KEY = "callmood-delivery-17"


def ctx(ticket_id="42", trial_run=False, action=None, summary="客户很生气"):
    return {"call": {"id": 7, "customer_id": "c-1", "ticket_id": ticket_id, "external_id": ticket_id},
            "alert": {"rule": "angry_customer", "scenario": "general", "severity": "critical", "role": "customer",
                      "emotions": ["angry"], "share": 0.5, "confidence": 0.91,
                      "matched": [[0.0, 3.0], [63.0, 66.0]], "summary": summary},
            "action": action or {}, "link": "http://callmood.local/calls/7", "trial": trial_run}


class ZendeskStandIn:
    """Answers like the Zendesk Support API for the endpoints the sink uses, refusing any
    request whose shape the documentation does not allow."""

    PER_PAGE = 2  # small, so the sink has to follow next_page

    def __init__(self, server: FakeServer):
        self.server = server
        self.auth = "Basic " + base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
        self.tickets: dict[int, dict] = {}
        self.users: dict[int, set] = {}
        self.keys: dict[str, int] = {}  # Idempotency-Key -> created ticket
        self.faults: dict[str, list] = {}  # kind -> [Reply (instead of acting) or "lost" (act, then 500)]
        self.on_tags = None  # called before a ticket's tags are added (to close it meanwhile)
        self.next_id = 500
        server.default = self.handle

    def ticket(self, tid=42, status="open", requester=9, tags=("vip",)):
        self.tickets[tid] = {"id": tid, "status": status, "requester_id": requester, "tags": set(tags),
                             "comments": [], "followup_ids": []}
        if requester is not None:
            self.users.setdefault(requester, set())
        return self.tickets[tid]

    def comment(self, tid, body, public):
        t = self.tickets[tid]
        t["comments"].append({"id": len(t["comments"]) + 1, "type": "Comment", "body": body, "plain_body": body,
                              "public": public, "author_id": 1})

    # --- dispatch --------------------------------------------------------------------
    ROUTES = [("GET", r"/api/v2/tickets/(\d+)\.json", "show"),
              ("PUT", r"/api/v2/tickets/(\d+)/tags\.json", "tags"),
              ("PUT", r"/api/v2/tickets/(\d+)\.json", "note"),
              ("GET", r"/api/v2/tickets/(\d+)/comments\.json", "comments"),
              ("PUT", r"/api/v2/users/(\d+)/tags\.json", "user_tags"),
              ("POST", r"/api/v2/tickets\.json", "create")]

    def handle(self, rec: Recorded) -> Reply:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        if headers.get("authorization") != self.auth:
            return Reply(401, {"error": "Couldn't authenticate you"})
        path, _, query = rec.path.partition("?")
        for method, pattern, kind in self.ROUTES:
            m = re.fullmatch(pattern, path)
            if m and rec.method == method:
                break
        else:
            return Reply(404, {"error": "InvalidEndpoint", "description": "Not found"})
        if rec.method in ("PUT", "POST"):
            if not headers.get("content-type", "").startswith("application/json"):
                return Reply(400, {"error": "Content-Type must be application/json"})
            try:
                body = rec.json()
            except ValueError:
                return Reply(400, {"error": "Unprocessable JSON"})
        else:
            body = None
        step = self.faults[kind].pop(0) if self.faults.get(kind) else None
        if isinstance(step, Reply):
            return step
        reply = getattr(self, kind)(int(m.group(1)) if m.groups() else None, body, query, headers)
        if step == "lost":
            return Reply(500, {"error": "the answer was lost"})
        return reply

    def _find(self, tid):
        return self.tickets.get(tid)

    # --- endpoints -------------------------------------------------------------------
    def show(self, tid, body, query, headers):
        t = self._find(tid)
        if t is None:
            return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
        return Reply(200, {"ticket": {"id": tid, "status": t["status"], "requester_id": t["requester_id"],
                                      "tags": sorted(t["tags"]), "followup_ids": list(t["followup_ids"])}})

    def tags(self, tid, body, query, headers):
        if self.on_tags:
            self.on_tags()
        t = self._find(tid)
        if t is None:
            return Reply(404, {"error": "RecordNotFound"})
        if set(body) != {"tags"} or not all(isinstance(x, str) and x for x in body["tags"]):
            return Reply(400, {"error": "tags must be a list of strings"})
        if t["status"] == "closed":
            return Reply(422, {"error": "RecordInvalid", "description": "Record validation errors",
                               "details": {"status": [{"description": "Status: closed prevents ticket update"}]}})
        t["tags"] |= set(body["tags"])
        return Reply(200, {"tags": sorted(t["tags"])})

    def note(self, tid, body, query, headers):
        t = self._find(tid)
        if t is None:
            return Reply(404, {"error": "RecordNotFound"})
        comment = (body.get("ticket") or {}).get("comment") if set(body) == {"ticket"} else None
        if set(body["ticket"]) != {"comment"} or not isinstance(comment, dict) or set(comment) != {"body", "public"} \
                or comment["public"] is not False or not isinstance(comment["body"], str):
            return Reply(400, {"error": "expected {ticket: {comment: {body, public: false}}}"})
        if t["status"] == "closed":
            return Reply(422, {"error": "RecordInvalid", "description": "Status: closed prevents ticket update"})
        self.comment(tid, comment["body"], False)
        return Reply(200, {"ticket": {"id": tid}})

    def comments(self, tid, body, query, headers):
        t = self._find(tid)
        if t is None:
            return Reply(404, {"error": "RecordNotFound"})
        q = parse_qs(query)
        items = list(reversed(t["comments"])) if q.get("sort_order") == ["desc"] else list(t["comments"])
        page = int(q.get("page", ["1"])[0])
        chunk = items[(page - 1) * self.PER_PAGE: page * self.PER_PAGE]
        more = len(items) > page * self.PER_PAGE
        nxt = f"{self.server.url}/api/v2/tickets/{tid}/comments.json?page={page + 1}&sort_order=desc" if more else None
        return Reply(200, {"comments": chunk, "next_page": nxt, "count": len(items)})

    def user_tags(self, uid, body, query, headers):
        if uid not in self.users:
            return Reply(404, {"error": "RecordNotFound"})
        if set(body) != {"tags"} or not all(isinstance(x, str) for x in body["tags"]):
            return Reply(400, {"error": "tags must be a list of strings"})
        self.users[uid] |= set(body["tags"])
        return Reply(200, {"tags": sorted(self.users[uid])})

    def create(self, _, body, query, headers):
        key = headers.get("idempotency-key")
        if key in self.keys:
            return Reply(201, {"ticket": {"id": self.keys[key]}}, {"x-idempotency-lookup": "hit"})
        t = body.get("ticket") if set(body) == {"ticket"} else None
        comment = (t or {}).get("comment")
        parent = self._find((t or {}).get("via_followup_source_id"))
        if not isinstance(comment, dict) or not isinstance(comment.get("body"), str) or parent is None \
                or parent["status"] != "closed" or not isinstance(t.get("subject"), str):
            return Reply(422, {"error": "RecordInvalid"})
        self.next_id += 1
        new = self.ticket(self.next_id, status="new", requester=t.get("requester_id", parent["requester_id"]),
                          tags=t["tags"] if "tags" in t else parent["tags"])
        self.comment(new["id"], comment["body"], comment.get("public", True))
        new["subject"], new["via_followup_source_id"] = t["subject"], parent["id"]
        parent["followup_ids"].append(new["id"])
        if key:
            self.keys[key] = new["id"]
        return Reply(201, {"ticket": {"id": new["id"]}}, {"x-idempotency-lookup": "miss"})


@pytest.fixture
def zd():
    server = FakeServer()
    yield ZendeskStandIn(server)
    server.close()


def make_sink(zd, **cfg) -> ZendeskSink:
    return ZendeskSink("zendesk", ZendeskSinkConfig(type="zendesk", api_base=zd.server.url, email=EMAIL,
                                                    api_token=TOKEN, **cfg))


def send(sink, payload, key=KEY, timeout=5.0):
    http = requests.Session()
    http.trust_env = False
    result = sink.send(json.loads(json.dumps(payload)), http, timeout, key)  # as stored: JSON
    assert_no_secret(result)
    return result


def assert_no_secret(obj):
    text = repr(obj)
    b64 = base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
    assert TOKEN not in text and b64 not in text


def ours(zd, tid=42):
    return [c for c in zd.tickets[tid]["comments"] if c["public"] is False]


# --- render ---------------------------------------------------------------------------

def test_render_stores_ticket_tags_and_note_without_credentials(zd):
    payload = make_sink(zd).render(ctx())
    assert set(payload) == {"ticket_id", "tags", "note", "subject"}
    assert payload["ticket_id"] == "42" and payload["tags"] == ["callmood-angry_customer"]
    lines = payload["note"].split("\n")
    assert lines == ["CallMood: 客户很生气", "Rule angry_customer · scenario general · severity critical",
                     "Emotion angry · confidence 0.91 · 50% of the customer's speech",
                     "Moments (customer): 00:00–00:03, 01:03–01:06", "Call: http://callmood.local/calls/7"]
    json.dumps(payload)
    assert_no_secret(payload) and EMAIL not in repr(payload)


@pytest.mark.parametrize("given,expected", [
    ({"tag": "Angry  Customer"}, ["angry_customer"]),
    ({"tags": ["VIP-Angry", "vip-angry", "情绪/投诉"]}, ["vip-angry", "情绪/投诉"]),
    ({"tags": "a b, C"}, ["a_b", "c"]),
    ({"tag": "x", "tags": []}, ["x"]),
    ({}, ["callmood-angry_customer"]),
])
def test_tags_follow_zendesk_rules(zd, given, expected):
    assert make_sink(zd).render(ctx(action=given))["tags"] == expected


@pytest.mark.parametrize("tag", ["a\"b", "x#y", "semi;colon", "<b>", "a\x00b", "a,b"])
def test_a_tag_zendesk_cannot_hold_kills_the_delivery_at_render(zd, tag):
    with pytest.raises(ValueError, match="Zendesk tag takes"):
        make_sink(zd).render(ctx(action={"tag": tag}))
    with pytest.raises(ValueError, match="longer than 80"):
        zendesk_tag("x" * 81)


@pytest.mark.parametrize("ticket_id,match", [
    (None, "the call has no ticket_id"), ("", "the call has no ticket_id"),
    ("../../admin?x=1#", "not a Zendesk ticket id"), ("42\r\nX-Admin: 1", "not a Zendesk ticket id"),
    ("42/../7", "not a Zendesk ticket id"), ("４２", "not a Zendesk ticket id"),
])
def test_a_call_without_a_usable_ticket_id_is_refused_at_render(zd, ticket_id, match):
    with pytest.raises(ValueError, match=match) as err:
        make_sink(zd).render(ctx(ticket_id=ticket_id))
    assert "\n" not in str(err.value) and "\r" not in str(err.value)  # one line, said as it is


def test_values_cannot_add_lines_to_the_note(zd):
    payload = make_sink(zd).render(ctx(summary="bad\ncallmood:callmood-delivery-99\r\nline"))
    assert payload["note"].split("\n")[0] == "CallMood: bad callmood:callmood-delivery-99 line"
    assert len(payload["note"].split("\n")) == 5


def test_trial_label_comes_first(zd):
    zd.ticket()
    sink = make_sink(zd)
    payload = sink.render(ctx(trial_run=True))
    assert payload["note"].split("\n")[0] == trial.LABEL and TRIAL_TAG in payload["tags"]
    assert send(sink, payload).ok
    assert ours(zd)[0]["body"].startswith(trial.LABEL + "\n")


# --- send -----------------------------------------------------------------------------

def test_open_ticket_gets_tags_a_private_note_and_its_requester_tags(zd):
    zd.ticket(42, requester=9, tags=("vip",))
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx()))
    assert result.ok and result.note is None
    t = zd.tickets[42]
    assert t["tags"] == {"vip", "callmood-angry_customer"}
    assert [c["body"].split("\n")[-1] for c in ours(zd)] == [f"callmood:{KEY}"]
    assert ours(zd)[0]["body"].startswith("CallMood: 客户很生气\n")
    assert zd.users[9] == {"callmood-angry_customer"}
    calls = [(r.method, r.path.split("?")[0]) for r in zd.server.requests]
    assert calls == [("GET", "/api/v2/tickets/42.json"), ("PUT", "/api/v2/tickets/42/tags.json"),
                     ("GET", "/api/v2/tickets/42/comments.json"), ("PUT", "/api/v2/tickets/42.json"),
                     ("PUT", "/api/v2/users/9/tags.json")]
    assert all("Idempotency-Key" not in r.headers for r in zd.server.requests)  # documented on create only


def test_sending_again_adds_no_second_note_and_tags_stay_a_set(zd):
    zd.ticket(42)
    zd.comment(42, "an agent's note", False)
    zd.comment(42, "a reply", True)  # older comments: the sink pages through them
    sink = make_sink(zd)
    payload = sink.render(ctx())
    first, again = send(sink, payload), send(sink, payload)
    assert first.ok and again.ok and "already there" in again.note
    assert len([c for c in ours(zd) if c["body"].endswith(KEY)]) == 1
    assert zd.tickets[42]["tags"] == {"vip", "callmood-angry_customer"} and zd.users[9] == {"callmood-angry_customer"}
    assert send(sink, payload, key="callmood-delivery-18").ok  # another delivery: its own note
    assert len(ours(zd)) == 3


def test_a_note_written_whose_answer_was_lost_is_not_written_twice(zd):
    zd.ticket(42)
    zd.faults["note"] = ["lost"]
    sink = make_sink(zd)
    payload = sink.render(ctx())
    lost = send(sink, payload)
    assert not lost.ok and lost.retryable and lost.status_code == 500
    assert send(sink, payload).ok
    assert len(ours(zd)) == 1


def test_a_marker_in_a_public_comment_does_not_stop_the_note(zd):
    zd.ticket(42)
    zd.comment(42, f"hello\ncallmood:{KEY}", True)  # the customer's email reply, guessing the key
    sink = make_sink(zd)
    assert send(sink, sink.render(ctx())).ok
    assert len(ours(zd)) == 1


def test_note_off_tags_only(zd):
    zd.ticket(42)
    sink = make_sink(zd, note=False, tag_user=False)
    assert send(sink, sink.render(ctx())).ok
    assert zd.tickets[42]["comments"] == [] and zd.users[9] == set()
    assert "callmood-angry_customer" in zd.tickets[42]["tags"]


def test_closed_ticket_user_only_tags_the_requester(zd):
    zd.ticket(42, status="closed")
    sink = make_sink(zd)
    payload = sink.render(ctx())
    result = send(sink, payload)
    assert result.ok and result.note == "ticket 42 is closed: only its requester was tagged"
    assert zd.tickets[42]["tags"] == {"vip"} and zd.tickets[42]["comments"] == []
    assert zd.users[9] == {"callmood-angry_customer"}
    assert [r.method for r in zd.server.requests] == ["GET", "PUT"]
    assert send(sink, payload).ok and zd.users[9] == {"callmood-angry_customer"}


def test_closed_ticket_without_a_requester_cannot_be_written(zd):
    zd.ticket(42, status="closed", requester=None)
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx()))
    assert not result.ok and not result.retryable and "closed and it has no requester" in result.error


def test_closed_ticket_follow_up_is_made_once(zd):
    zd.ticket(42, status="closed", requester=9, tags=("vip",))
    sink = make_sink(zd, closed_ticket="follow_up")
    payload = sink.render(ctx())
    result = send(sink, payload)
    assert result.ok and result.note == "ticket 42 is closed: follow-up ticket 501 was made"
    new = zd.tickets[501]
    assert new["via_followup_source_id"] == 42 and new["requester_id"] == 9
    assert new["tags"] == {"vip", "callmood-angry_customer"}  # the parent's kept: named tags replace them
    assert new["subject"] == "CallMood: critical alert (angry_customer) on closed ticket 42"
    assert [c["public"] for c in new["comments"]] == [False]
    assert new["comments"][0]["body"].endswith(f"\ncallmood:{KEY}")
    create = next(r for r in zd.server.requests if r.method == "POST")
    assert create.headers["Idempotency-Key"] == KEY
    assert zd.users[9] == {"callmood-angry_customer"}

    again = send(sink, payload)
    assert again.ok and again.note == "ticket 42 is closed: follow-up ticket 501 was already made"
    assert zd.tickets[42]["followup_ids"] == [501]


def test_follow_up_whose_answer_was_lost_is_not_made_twice(zd):
    zd.ticket(42, status="closed")
    zd.faults["create"] = ["lost"]
    sink = make_sink(zd, closed_ticket="follow_up")
    payload = sink.render(ctx())
    assert not send(sink, payload).ok
    assert send(sink, payload).ok
    assert zd.tickets[42]["followup_ids"] == [501]


def test_a_ticket_closed_while_writing_goes_the_closed_way(zd):
    zd.ticket(42, status="open")
    zd.on_tags = lambda: zd.tickets[42].update(status="closed")
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx()))
    assert result.ok and result.note == "ticket 42 is closed: only its requester was tagged"
    assert zd.users[9] == {"callmood-angry_customer"}


def test_a_requester_zendesk_refuses_to_tag_is_said_beside_a_delivered_ticket(zd):
    zd.ticket(42)
    zd.faults["user_tags"] = [Reply(422, {"error": "RecordInvalid", "description": "User tagging is disabled"})]
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx()))
    assert result.ok and "the requester was not tagged" in result.note and "HTTP 422" in result.note
    assert len(ours(zd)) == 1


def test_429_is_throttled_with_retry_after(zd):
    zd.ticket(42)
    zd.faults["show"] = [Reply(429, "Number of allowed API requests per minute exceeded", {"Retry-After": "7"})]
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx()))
    assert (result.ok, result.throttled, result.retry_after, result.retryable) == (False, True, 7.0, True)
    assert result.status_code == 429


def test_429_on_the_note_leaves_nothing_to_repeat_wrongly(zd):
    zd.ticket(42)
    zd.faults["note"] = [Reply(429, "", {"Retry-After": "30"})]
    sink = make_sink(zd)
    payload = sink.render(ctx())
    assert send(sink, payload).retry_after == 30.0
    assert send(sink, payload).ok and len(ours(zd)) == 1


def test_no_such_ticket_is_final(zd):
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx(ticket_id="404")))
    assert not result.ok and not result.retryable and result.error == "no ticket 404 in Zendesk (HTTP 404)"


def test_refused_credentials_are_retried_and_never_shown(zd):
    zd.ticket(42)
    b64 = base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
    zd.faults["show"] = [Reply(401, f"Authorization: Basic {b64} bad; token {TOKEN}")]
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx()))
    assert not result.ok and result.retryable and "check sinks.zendesk.email and api_token" in result.error


def test_an_unreachable_zendesk_is_retried_without_secrets():
    sink = ZendeskSink("zendesk", ZendeskSinkConfig(type="zendesk", api_base="http://127.0.0.1:9", email=EMAIL,
                                                    api_token=TOKEN))
    result = send(sink, sink.render(ctx()), timeout=2.0)
    assert not result.ok and result.retryable and result.error.startswith("Zendesk ticket 42: ")


def test_a_hostile_requester_id_from_the_api_goes_into_no_path(zd):
    zd.ticket(42, requester="../../admin?x=1#")
    sink = make_sink(zd)
    result = send(sink, sink.render(ctx()))
    assert not result.ok and not result.retryable and "not a user id" in result.error
    assert [(r.method, r.path) for r in zd.server.requests] == [("GET", "/api/v2/tickets/42.json")]


def test_a_stored_payload_is_checked_again_before_it_is_sent(zd):
    sink = make_sink(zd)
    for bad in ({"ticket_id": "../x", "tags": ["a"], "note": "n"}, {"ticket_id": "42", "tags": "a", "note": "n"},
                {"ticket_id": "42", "tags": ["a,b"], "note": "n"}):
        result = send(sink, bad)
        assert not result.ok and not result.retryable and result.error.startswith("stored payload: ")
    assert zd.server.requests == []


# --- config ---------------------------------------------------------------------------

def test_config_needs_an_account_and_https_beyond_this_machine():
    base = {"type": "zendesk", "email": EMAIL, "api_token": TOKEN}
    assert ZendeskSinkConfig(**base, subdomain="acme").base_url() == "https://acme.zendesk.com"
    assert ZendeskSinkConfig(**base, api_base="http://localhost:8080/").base_url() == "http://localhost:8080"
    for bad, match in [({}, "set subdomain"), ({"api_base": "http://zendesk.example"}, "plain http"),
                       ({"api_base": "https://u:p@acme.zendesk.com"}, "no credentials"),
                       ({"api_base": "https://acme.zendesk.com/api"}, "no path"),
                       ({"subdomain": "Acme.com"}, "subdomain"),
                       ({"closed_ticket": "reopen", "subdomain": "a"}, "closed_ticket")]:
        with pytest.raises(ValidationError, match=match):
            ZendeskSinkConfig(**base, **bad)
    assert urlsplit(ZendeskSinkConfig(**base, api_base="https://zd.internal:8443").base_url()).port == 8443
