"""The tutorial's demo API: POST /predict and GET /health keep working (Flask's test
client, the shared random-weight model)."""

from collections import Counter
from datetime import datetime
from io import BytesIO

import pytest

from tests.conftest import make_config
from tests.helpers import make_audio


@pytest.fixture
def http(tmp_path, model_dir, sqlite_url, app_factory):
    """The test client of an app whose model is loaded."""
    return app_factory(make_config(tmp_path, model_dir, sqlite_url), model=True)[1]


def upload(http, name: str, content: bytes, url: str = "/predict"):
    return http.post(url, data={"file": (BytesIO(content), name)}, content_type="multipart/form-data")


def test_health_when_ready(http):
    r = http.get("/health")
    assert r.status_code == 200
    body = r.json
    assert {k: body[k] for k in ("status", "message")} == {"status": "success",
                                                          "message": "Model is ready for inference"}


def test_predict(tmp_path, http):
    path = make_audio(tmp_path / "angry_sample", "wav_pcm", 16000, 1, 7.0)
    r = upload(http, "angry_sample.wav", path.read_bytes())
    assert r.status_code == 200, r.text
    body = r.json
    assert body["filename"] == "angry_sample.wav"
    assert isinstance(body["emotion"], str) and 0 < body["confidence"] <= 1
    datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(0, 3), (3, 6), (6, 7)]
    # the verdict is the vote over the 3 s pieces, as in the tutorial
    labels = [s["emotion"] for s in body["segments"]]
    counts = Counter(labels)
    assert counts[body["emotion"]] == max(counts.values())
    # a tie goes to the label heard first, as Counter.most_common keeps first-seen order
    assert body["emotion"] == counts.most_common(1)[0][0]


def test_predict_other_formats_and_errors(tmp_path, http):
    mp3 = make_audio(tmp_path / "call", "mp3", 44100, 2, 4.0)
    r = upload(http, "call.mp3", mp3.read_bytes())
    assert r.status_code == 200 and len(r.json["segments"]) == 2

    r = upload(http, "x.wav", b"not audio" * 100)
    assert r.status_code == 400 and "cannot decode" in r.json["error"]
    r = http.post("/predict", data={"nofile": "1"}, content_type="multipart/form-data")
    assert r.status_code == 400 and "'file'" in r.json["error"]
    short = make_audio(tmp_path / "short", "wav_pcm", 16000, 1, 0.5)
    r = upload(http, "s.wav", short.read_bytes())
    assert r.status_code == 422


def test_upload_size_limit(tmp_path, model_dir, sqlite_url, app_factory):
    _, http = app_factory(make_config(tmp_path, model_dir, sqlite_url, server={"max_upload_bytes": 10_000}),
                          model=True)
    r = upload(http, "big.wav", b"x" * 50_000)
    assert r.status_code == 413 and "error" in r.json


def test_dashboard_and_metrics(client):
    assert "Red-flagged customers" in client.get("/dashboard?lang=en").text
    assert client.get("/api/flagged").json == {"customers": [], "total": 0, "page": 1}
    assert client.get("/api/calls/999").status_code == 404
    assert "callmood_webhooks_total" in client.get("/metrics").text
