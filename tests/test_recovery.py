"""What happens when things go wrong halfway: lost leases, broken templates, flaky databases."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from plugin import pipeline, queue
from plugin.models import AlertRow, Delivery, Job, Segment, utcnow
from tests.conftest import by_sink, event, make_config
from tests.helpers import Reply, make_audio


def test_a_worker_that_lost_its_lease_commits_nothing(tmp_path, model_dir, db_url, service_factory, recordings):
    svc = service_factory(make_config(tmp_path, model_dir, db_url, worker={"lease_s": 400}), start_runtime=False)
    url = recordings.serve_file("/a.wav", make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 4.0))
    call_id = svc.post_event(event("lease-lost", url)).json()["call_id"]
    job_id = queue.claim_job(svc.svc.sessions, "slow-worker", lease_s=400)
    # The slow worker's lease runs out and another worker takes the job.
    with svc.svc.sessions.begin() as s:
        s.get(Job, job_id).lease_expires_at = utcnow()
    assert queue.claim_job(svc.svc.sessions, "new-worker", lease_s=400) == job_id

    with pytest.raises(pipeline.LeaseLost):
        pipeline.analyze_call(svc.svc, call_id, job_id=job_id, owner="slow-worker")
    with svc.svc.sessions() as s:
        assert s.execute(select(func.count(Segment.id))).scalar() == 0
        assert s.execute(select(func.count(AlertRow.id))).scalar() == 0
    pipeline.run_job(svc.svc, job_id, "slow-worker")  # run_job swallows it and changes nothing
    assert svc.call(call_id)["jobs"][0]["status"] == "running"

    pipeline.run_job(svc.svc, job_id, "new-worker")
    call = svc.call(call_id)
    assert call["status"] == "analyzed" and call["jobs"][0]["status"] == "done"


def test_a_bad_payload_template_kills_that_delivery_only(tmp_path, model_dir, sqlite_url, service_factory,
                                                        recordings, crm, wecom):
    cfg = make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom,
                      sinks={"crm": {"body": {"note": "{{ call.no_such_field }}"}}})
    svc = service_factory(cfg)
    url = recordings.serve_file("/t.wav", make_audio(tmp_path / "t", "wav_pcm", 16000, 1, 4.0))
    call = svc.wait_deliveries(svc.post_event(event("tmpl-1", url)).json()["call_id"])
    assert call["status"] == "analyzed" and call["segments"]
    got = by_sink(call)
    assert got["crm"]["status"] == "dead" and "no_such_field" in got["crm"]["last_error"]
    assert got["wecom"]["status"] == "delivered"
    assert crm.requests == []


def test_requests_that_can_never_succeed_die_at_once(tmp_path, model_dir, sqlite_url, service_factory,
                                                   recordings, crm, wecom):
    crm.routes["/api/customers/cust-42/tags"] = Reply(422, {"error": "unknown tag"})
    wecom.routes["/cgi-bin/webhook/send"] = Reply(200, {"errcode": 40058, "errmsg": "content exceed max length"})
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom))
    url = recordings.serve_file("/n.wav", make_audio(tmp_path / "n", "wav_pcm", 16000, 1, 4.0))
    call = svc.wait_deliveries(svc.post_event(event("final-1", url)).json()["call_id"])
    got = {k: (d["status"], d["attempts"]) for k, d in by_sink(call).items()}
    assert got == {"crm": ("dead", 1), "wecom": ("dead", 1)}


def test_the_worker_survives_a_database_outage(tmp_path, model_dir, sqlite_url, service_factory, recordings,
                                               monkeypatch):
    import plugin.runtime

    real, failures = plugin.runtime.run_job, []

    def flaky(*args):
        if not failures:
            failures.append(1)
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"))
        return real(*args)
    monkeypatch.setattr(plugin.runtime, "run_job", flaky)
    cfg = make_config(tmp_path, model_dir, sqlite_url, worker={"lease_s": 1.5, "retry_backoff_s": 0.1},
                      fetch={"max_seconds": 1, "allow_networks": ["127.0.0.0/8"]})
    svc = service_factory(cfg)
    url = recordings.serve_file("/o.wav", make_audio(tmp_path / "o", "wav_pcm", 16000, 1, 4.0))
    call = svc.wait_call(svc.post_event(event("outage-1", url)).json()["call_id"])
    assert failures and call["status"] == "analyzed" and call["jobs"][0]["attempts"] == 2
    with svc.svc.sessions() as s:
        assert s.execute(select(func.count(Delivery.id))).scalar() == 0  # no sinks configured here
