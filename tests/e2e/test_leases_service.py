"""A call that takes several leases to analyse keeps its lease: two running services on one
database, the second polling for work all along, and the call is analysed once."""

from sqlalchemy import select

from plugin.store.tables import Job
from tests.conftest import event, make_config
from tests.helpers import make_audio, wait_until

LEASE_S = 1.2


def owner_of(service, call_id) -> tuple[str, str]:
    """The status and lease owner of the call's job, from the database."""
    with service.svc.sessions() as s:
        return s.execute(select(Job.status, Job.lease_owner).where(Job.call_id == call_id)).one()


def test_a_call_longer_than_its_lease_is_analysed_once(tmp_path, model_dir, db_url, service_factory, recordings):
    # A short lease (renewed every 0.4 s); the download must fit in one (fetch.max_seconds).
    cfg = make_config(tmp_path, model_dir, db_url, fetch={"max_seconds": 1, "timeout_s": 1},
                      worker={"lease_s": LEASE_S, "concurrency": 1, "poll_interval_s": 0.05})
    first = service_factory(cfg)
    second = service_factory(cfg, start_runtime=False)
    # 20 minutes of audio: several leases of decoding and classifying on any machine. MP3
    # (4.8 MB): its download must fit in fetch.max_seconds (1 s) on a busy machine too, where
    # the same call as 16-bit WAV (19 MB) did not (the call failed, not the lease).
    long_url = recordings.serve_file("/long.mp3", make_audio(tmp_path / "long", "mp3", 8000, 1, 1200.0))
    short_url = recordings.serve_file("/short.wav", make_audio(tmp_path / "short", "wav_pcm", 16000, 1, 4.0))

    long_id = first.post_event(event("long-1", long_url)).json()["call_id"]
    wait_until(lambda: owner_of(first, long_id) == ("running", first.runtime.owner), timeout=30)
    # The second worker polls every 50 ms from now on. It is alive and taking work: a call
    # that comes meanwhile is its (the first runs one call at a time).
    second.start_runtime()
    short_id = second.post_event(event("short-1", short_url)).json()["call_id"]
    assert second.wait_call(short_id)["status"] == "analyzed"
    assert owner_of(second, short_id) == ("done", second.runtime.owner)
    assert first.call(long_id)["status"] != "analyzed"  # the long one was in flight all along

    call = first.wait_call(long_id, timeout=180)
    assert call["status"] == "analyzed", call
    # One claim, by the first worker: the second never took the job over.
    assert [(j["status"], j["attempts"]) for j in call["jobs"]] == [("done", 1)]
    assert owner_of(first, long_id) == ("done", first.runtime.owner)
    # The premise: decoding and classifying outlasted several leases.
    stage_s = call["timings"]["decode"] + call["timings"]["segment_and_infer"]
    assert stage_s > 3 * LEASE_S, f"the slow stage took only {stage_s:.1f}s; the test proves nothing"
