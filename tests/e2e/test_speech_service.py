"""Several stereo speech calls at once through the running service: two worker threads,
shared batches, speech-only segments."""

from __future__ import annotations

from tests.conftest import event, make_config
from tests.speech import write_conversation

AGENT = "Good morning, thank you for calling. How can I help you today?"
CUSTOMER = ("I was charged twice for the same order and nobody answered my emails. "
            "I want my money back today.")
PAD = 0.3  # speech_pad_s (0.1 s) plus silero's lag as speech fades out


def _turns():
    return [(0, 1.0, AGENT), (1, 7.0, CUSTOMER)]


def test_speech_calls_end_to_end_in_parallel(tmp_path, model_dir, db_url, service_factory, recordings, crm,
                                             wecom):
    """Several stereo calls at once: two worker threads, shared batches, speech-only segments."""
    cfg = make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom,
                      audio={"vad": "silero"}, worker={"concurrency": 2})
    svc = service_factory(cfg)
    batcher = svc.svc.model.get().batcher  # shared by the session's tests: count this test's batches
    before = batcher.batches_run
    ids = []
    for i in range(3):
        path = write_conversation(tmp_path / f"c{i}", _turns(), 16.0, channels=2, rate=8000, fmt="wav_mulaw")
        url = recordings.serve_file(f"/rec/c{i}.wav", path)
        r = svc.post_event(event(f"sp-{i}", url, channels={"0": "agent", "1": "customer"}))
        assert r.status_code == 202, r.text
        ids.append(r.json()["call_id"])
    for call_id in ids:
        call = svc.wait_call(call_id, timeout=120)
        assert call["status"] == "analyzed", call
        roles = {s["role"] for s in call["segments"]}
        assert roles == {"agent", "customer"}
        customer = [s for s in call["segments"] if s["role"] == "customer"]
        assert min(s["start"] for s in customer) >= 7.0 - PAD  # nothing before the customer spoke
        assert call["summary"]["vad"] == "silero" and call["summary"]["skipped_s"] > 15
        assert call["alerts"] and call["alerts"][0]["role"] == "customer"
    assert batcher.batches_run > before
