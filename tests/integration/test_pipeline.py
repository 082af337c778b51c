"""What happens when things go wrong halfway: lost leases, broken templates, sinks that
refuse for good. The pipeline and the outbox run in the test's own thread, one step at a
time; time is a ManualClock."""

import pytest
import requests
from sqlalchemy import func, select

from plugin.flow.pipeline import LeaseLost
from plugin.store.tables import AlertRow, Segment
from tests.conftest import ROUTE_ALL, by_sink, event, make_config, routed_delivery, signed
from tests.helpers import Reply, make_audio


@pytest.fixture
def served(app_factory, clock):
    """The app for a config, with the shared model and a ManualClock, and its test client."""
    return lambda cfg: app_factory(cfg, model=True, clock=clock)


def accept(client, body) -> int:
    r = client.post("/webhooks/generic", **signed(body))
    assert r.status_code == 202, r.text
    return r.json["call_id"]


def work_and_deliver(svc) -> None:
    """One worker claims and runs the job; the outbox attempts what is due."""
    job_id = svc.jobs.claim("worker")
    assert job_id is not None
    svc.pipeline().run_job(job_id, "worker")
    with requests.Session() as http:
        http.trust_env = False
        svc.outbox().drain(http, "sender")


def test_a_worker_that_lost_its_lease_commits_nothing(tmp_path, model_dir, db_url, served, recordings):
    svc, client = served(make_config(tmp_path, model_dir, db_url, worker={"lease_s": 400}))
    url = recordings.serve_file("/a.wav", make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 4.0))
    call_id = accept(client, event("lease-lost", url))
    job_id = svc.jobs.claim("slow-worker")
    # The slow worker's lease runs out and another worker takes the job.
    svc.clock.advance(seconds=401)
    assert svc.jobs.claim("new-worker") == job_id

    pipeline = svc.pipeline()
    with pytest.raises(LeaseLost):
        pipeline.analyze_call(call_id, job_id=job_id, owner="slow-worker")
    with svc.sessions() as s:
        assert s.execute(select(func.count(Segment.id))).scalar() == 0
        assert s.execute(select(func.count(AlertRow.id))).scalar() == 0
    pipeline.run_job(job_id, "slow-worker")  # run_job swallows it and changes nothing
    assert client.get(f"/api/calls/{call_id}").json["jobs"][0]["status"] == "running"

    pipeline.run_job(job_id, "new-worker")
    call = client.get(f"/api/calls/{call_id}").json
    assert call["status"] == "analyzed" and call["jobs"][0]["status"] == "done"


def test_a_bad_payload_template_kills_that_delivery_only(tmp_path, model_dir, sqlite_url, served,
                                                        recordings, crm, wecom, rules_dir):
    (rules_dir / "routing.yaml").write_text(ROUTE_ALL, encoding="utf-8")
    cfg = make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom, rules={"path": str(rules_dir)},
                      sinks={"crm": {"body": {"note": "{{ call.no_such_field }}"}}})
    svc, client = served(cfg)
    url = recordings.serve_file("/t.wav", make_audio(tmp_path / "t", "wav_pcm", 16000, 1, 4.0))
    call_id = accept(client, event("tmpl-1", url))
    work_and_deliver(svc)
    call = client.get(f"/api/calls/{call_id}").json
    assert call["status"] == "analyzed" and call["segments"]
    got = by_sink(call)
    assert got["crm"]["status"] == "dead" and "no_such_field" in got["crm"]["last_error"]
    assert routed_delivery(client, call)["status"] == "delivered"  # the supervisors' message
    assert crm.requests == []


def test_requests_that_can_never_succeed_die_at_once(tmp_path, model_dir, sqlite_url, served,
                                                   recordings, crm, wecom, rules_dir):
    crm.routes["/api/customers/cust-42/tags"] = Reply(422, {"error": "unknown tag"})
    wecom.routes["/cgi-bin/webhook/send"] = Reply(200, {"errcode": 40058, "errmsg": "content exceed max length"})
    (rules_dir / "routing.yaml").write_text(ROUTE_ALL, encoding="utf-8")
    svc, client = served(make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom,
                                     rules={"path": str(rules_dir)}))
    url = recordings.serve_file("/n.wav", make_audio(tmp_path / "n", "wav_pcm", 16000, 1, 4.0))
    call_id = accept(client, event("final-1", url))
    work_and_deliver(svc)
    call = client.get(f"/api/calls/{call_id}").json
    got = {k: (d["status"], d["attempts"]) for k, d in by_sink(call).items()}
    routed = routed_delivery(client, call)
    assert got == {"crm": ("dead", 1)} and (routed["status"], routed["attempts"]) == ("dead", 1)



def test_a_trickling_recording_fails_its_call_once_without_a_retry(tmp_path, model_dir, db_url, served):
    from tests.helpers import Trickler
    trickler = Trickler(every=0.2)
    try:
        trickler.routes["/t.wav"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"x" * 1000)
        svc, client = served(make_config(tmp_path, model_dir, db_url, fetch={"max_seconds": 1, "timeout_s": 5}))
        call_id = accept(client, event("trickle-1", trickler.url + "/t.wav"))
        svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    finally:
        trickler.close()
    call = client.get(f"/api/calls/{call_id}").json
    assert call["status"] == "failed" and call["error"] == "download took longer than 1s (fetch.max_seconds); not retried"
    assert [(j["status"], j["attempts"]) for j in call["jobs"]] == [("failed", 1)]
    assert svc.jobs.claim("worker") is None  # nothing queued to try it again
