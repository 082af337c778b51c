"""The running worker lives through a database that goes away mid-job."""

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from plugin.flow.pipeline import Pipeline
from plugin.store.tables import Delivery
from tests.conftest import event, make_config
from tests.helpers import make_audio, wait_until


def test_the_worker_survives_a_database_outage(tmp_path, model_dir, sqlite_url, service_factory, recordings,
                                               monkeypatch, clock):
    real, failures = Pipeline.run_job, []

    def flaky(self, *args):
        if not failures:
            failures.append(1)
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"))
        return real(self, *args)
    monkeypatch.setattr(Pipeline, "run_job", flaky)
    cfg = make_config(tmp_path, model_dir, sqlite_url, worker={"lease_s": 30, "retry_backoff_s": 0.1})
    svc = service_factory(cfg, clock=clock)
    url = recordings.serve_file("/o.wav", make_audio(tmp_path / "o", "wav_pcm", 16000, 1, 4.0))
    call_id = svc.post_event(event("outage-1", url)).json()["call_id"]
    wait_until(lambda: failures)  # the worker thread hit the outage mid-job and lives on
    clock.advance(seconds=31)  # the job's lease runs out: it is taken again
    call = svc.wait_call(call_id)
    assert failures and call["status"] == "analyzed" and call["jobs"][0]["attempts"] == 2
    with svc.svc.sessions() as s:
        assert s.execute(select(func.count(Delivery.id))).scalar() == 0  # no sinks configured here
