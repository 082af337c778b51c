"""GET /health says "degraded" while calls failed or deliveries died within the window
(an hour), or while an edit of the rules stands refused; it stays 200 then (usable as a
liveness check: a restart fixes none of it), 503 only until the model is loaded, as
before. GET /health/live is 200 whenever the process serves. Time is a ManualClock."""

from types import SimpleNamespace

import pytest

from plugin.flow.rerun import rerun_calls
from plugin.store.tables import AlertRow
from tests.conftest import authed, edit, event, make_config, signed


@pytest.fixture
def ready(tmp_path, db_url, clock, app_factory):
    """``make(**config) -> (services, admin client)``: the app with its model loaded (a
    stand-in: /health never runs it) and a ManualClock."""
    def make(**overrides):
        svc, admin = app_factory(make_config(tmp_path, None, db_url, **overrides), clock=clock)
        svc.model.model = SimpleNamespace(trial=False, device="cpu", precision="int8", batch_size=16,
                                          precision_reason="auto: int8 on a CPU with AVX2")
        svc.model.state, svc.model.reason = "ready", "Model is ready for inference"
        return svc, admin
    return make


def failed_call(svc, client, name: str) -> int:
    """A call whose analysis failed for good now (as the pipeline records it)."""
    r = client.post("/webhooks/generic", **signed(event(name, "http://127.0.0.1:9/r.wav")))
    job_id = svc.jobs.claim("worker")
    with svc.sessions.begin() as s:
        svc.jobs.fail(s, job_id, "worker", "recording server answered HTTP 404 Not Found", retry_in_s=None)
    return r.json["call_id"]


def dead_delivery(svc, call_id: int) -> int:
    """An alert of the call whose delivery died now."""
    with svc.sessions.begin() as s:
        now = svc.clock.now(s)
        alert = AlertRow(call_id=call_id, rule="r", scenario="s", severity="warning", role="customer",
                         emotions=["angry"], share=1.0, confidence=0.9, matched=[], summary="x", created_at=now)
        s.add(alert)
        s.flush()
        d = svc.deliveries.add(s, "crm", {}, alert_id=alert.id, dead_because="the CRM answered HTTP 422")
        s.flush()
        return d.id


def test_failed_calls_make_it_degraded_for_the_window(ready, clock):
    svc, admin = ready()
    anon, sup = authed(admin.application, None), authed(admin.application, "supervisor")
    r = admin.get("/health")
    assert (r.status_code, r.json["status"], r.json["message"]) == (200, "success", "Model is ready for inference")
    assert r.json["detail"]["recent"] == {"window_s": 3600.0, "calls_failed": 0, "deliveries_dead": 0,
                                          "failed_call_ids": [], "dead_delivery_ids": []}
    model = r.json["detail"]["model"]  # what runs, and why that precision (auto picks by the hardware)
    assert (model["state"], model["device"], model["precision"], model["batch_size"]) == ("ready", "cpu", "int8", 16)
    assert model["precision_reason"] == "auto: int8 on a CPU with AVX2"

    call_id = failed_call(svc, admin, "f-1")
    r = admin.get("/health")
    assert r.status_code == 200 and r.json["status"] == "degraded"
    assert r.json["message"] == ("Model is ready for inference; degraded: 1 call(s) failed in the last 1h "
                                 "(callmood calls rerun --failed)")
    assert r.json["detail"]["recent"]["calls_failed"] == 1
    assert r.json["detail"]["recent"]["failed_call_ids"] == [call_id]
    # Without an admin's credentials: the status, never why.
    for client in (anon, sup):
        r = client.get("/health")
        assert r.status_code == 200 and r.json == {"status": "degraded", "message": "ready, degraded"}

    clock.advance(minutes=59)
    assert admin.get("/health").json["status"] == "degraded"
    clock.advance(minutes=2)  # the failure is older than the window
    r = admin.get("/health")
    assert r.json["status"] == "success" and r.json["detail"]["recent"]["calls_failed"] == 0

    # A failed call that is re-run stops counting at once: someone is on it.
    again = failed_call(svc, admin, "f-2")
    assert admin.get("/health").json["status"] == "degraded"
    rerun_calls(svc.sessions, svc.jobs, [again], "test")
    assert admin.get("/health").json["status"] == "success"


def test_dead_deliveries_make_it_degraded_for_the_window(ready, clock):
    svc, admin = ready()
    call_id = admin.post("/webhooks/generic", **signed(event("d-1", "http://127.0.0.1:9/r.wav"))).json["call_id"]
    delivery_id = dead_delivery(svc, call_id)
    r = admin.get("/health")
    assert r.status_code == 200 and r.json["status"] == "degraded"
    assert r.json["message"].endswith("degraded: 1 delivery(ies) died in the last 1h")
    assert r.json["detail"]["recent"]["dead_delivery_ids"] == [delivery_id]

    failed_call(svc, admin, "d-2")
    assert admin.get("/health").json["message"].endswith(
        "degraded: 1 call(s) failed in the last 1h (callmood calls rerun --failed); "
        "1 delivery(ies) died in the last 1h")

    clock.advance(hours=1, seconds=1)
    r = admin.get("/health")
    assert r.json["status"] == "success"
    assert r.json["detail"]["queue"]["deliveries_dead"] == 1  # still counted there, whenever it died


def test_refused_rules_make_it_degraded_until_fixed(ready, rules_dir):
    svc, admin = ready(rules={"path": str(rules_dir)})
    edit(rules_dir, "min_share: 0.0", "min_share: 7")
    assert svc.rules_holder.reload_if_changed() is False  # refused; the last good rules stay
    r = admin.get("/health")
    assert r.status_code == 200 and r.json["status"] == "degraded"
    assert "an edit of the rules was refused; the last good rules are in force" in r.json["message"]
    assert r.json["detail"]["rules"]["status"] == "refused"
    assert authed(admin.application, None).get("/health").json["status"] == "degraded"

    edit(rules_dir, "min_share: 7", "min_share: 0.0")  # reverted
    svc.rules_holder.reload_if_changed()
    assert admin.get("/health").json["status"] == "success"


def test_the_window_is_configurable(ready, clock):
    svc, admin = ready(server={"health_window_s": 600})
    failed_call(svc, admin, "w-1")
    r = admin.get("/health")
    assert r.json["status"] == "degraded" and "in the last 10m" in r.json["message"]
    assert r.json["detail"]["recent"]["window_s"] == 600
    clock.advance(minutes=11)
    assert admin.get("/health").json["status"] == "success"


def test_not_ready_is_still_503_and_live_is_200(tmp_path, db_url, clock, app_factory):
    svc, admin = app_factory(make_config(tmp_path, None, db_url), clock=clock)  # no model
    anon = authed(admin.application, None)
    failed_call(svc, admin, "n-1")
    r = anon.get("/health")
    assert r.status_code == 503 and r.json == {"status": "error", "message": "not ready"}
    r = admin.get("/health")
    assert r.status_code == 503 and r.json["status"] == "error" and r.json["message"].startswith("Model not ready")
    assert r.json["detail"]["recent"]["calls_failed"] == 1  # the detail says it, readiness decides the answer
    for client in (anon, admin):
        r = client.get("/health/live")
        assert (r.status_code, r.json) == (200, {"status": "alive"})
