"""POST /webhooks/<source> at the door: signatures, malformed events, and what is stored
when one is accepted (Flask's test client; no worker runs)."""

from sqlalchemy import select

from plugin.store.tables import Call, Job
from tests.conftest import T0, event, signed


def post(client, body, source="generic", **kw):
    return client.post(f"/webhooks/{source}", **signed(body, **kw))


def test_bad_signature_and_malformed_events_change_nothing(client):
    good = event("sig-1", "http://127.0.0.1:9/r.wav")

    r = post(client, good, secret="wrong-secret")
    assert r.status_code == 401 and "signature" in r.json["error"]
    r = post(client, good, signature="")
    assert r.status_code == 401 and "missing" in r.json["error"]

    r = post(client, {k: v for k, v in good.items() if k != "recording_url"})
    assert r.status_code == 400 and r.json["field"] == "recording_url"
    r = post(client, dict(good, channels={"0": "agent", "1": "boss"}))
    assert r.status_code == 400 and r.json["field"] == "channels"
    r = post(client, b"{not json")
    assert r.status_code == 400 and r.json["field"] == "body"
    r = post(client, good, source="nosuch")
    assert r.status_code == 404
    r = post(client, good, source="model_config")  # a name of the config object, not a source
    assert r.status_code == 404

    assert client.get("/api/calls").json["calls"] == []


def test_an_accepted_event_is_a_call_and_a_due_job_at_the_clocks_time(client, services):
    r = post(client, event("c-1", "http://127.0.0.1:9/r.wav", scenario=None, channels={"0": "agent", "1": "customer"}))
    assert r.status_code == 202 and r.json["status"] == "accepted"
    again = post(client, event("c-1", "http://127.0.0.1:9/r.wav"))
    assert again.status_code == 202 and again.json == {**r.json, "status": "duplicate"}
    with services.sessions() as s:
        call, job = s.get(Call, r.json["call_id"]), s.get(Job, r.json["job_id"])
        assert (call.queue, call.customer_id, call.channel_roles) == ("support", "cust-42",
                                                                     {"0": "agent", "1": "customer"})
        assert call.received_at == job.run_after == job.created_at == T0  # the one clock (a ManualClock here)
        assert (job.status, job.attempts) == ("queued", 0)
        assert s.execute(select(Job).where(Job.call_id == call.id)).scalars().all() == [job]
    assert client.get(f"/api/calls/{call.id}").json["queue"] == "support"


def test_a_hostile_queue_is_refused_at_the_door_and_escaped_where_one_was_stored(client, services):
    """The queue (a field any helpdesk user may fill) is refused at the door; one stored
    before the door checked it (or by another source) is shown escaped, never as markup."""
    queue = '<script>alert(1)</script>"><img src=x onerror=alert(2)>{{ 7*7 }}'
    r = post(client, event("c-x", "http://127.0.0.1:9/r.wav", queue=queue))
    assert r.status_code == 400 and r.json["field"] == "queue" and "'<'" in r.json["error"]
    with services.sessions.begin() as s:
        call = Call(source="generic", external_id="c-x", recording_url="http://127.0.0.1:9/r.wav",
                    customer_id="cust-42", queue=queue, event={}, received_at=T0)
        s.add(call)
        s.flush()
        call_id = call.id
    assert client.get(f"/api/calls/{call_id}").json["queue"] == queue  # JSON keeps it exactly
    page = client.get(f"/calls/{call_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;{{ 7*7 }}" in page
    assert "<script>alert" not in page and "<img src=x" not in page  # and the {{ }} stayed text, above
