"""The tutorial's demo API: POST /predict and GET /health keep working (through Flask's
test client, with the shared random-weight model)."""

import io
from collections import Counter
from datetime import datetime
from types import SimpleNamespace

import pytest

from plugin.services import build
from plugin.web.app import create_app
from tests.conftest import make_config, use_model
from tests.helpers import make_audio


class Client:
    """Flask's test client with the two calls these tests make, answering like requests."""

    def __init__(self, client):
        self.client = client

    def get(self, url):
        return self.client.get(url)

    def post(self, url, files=None, data=None):
        form = dict(data or {})
        for field, (name, content) in (files or {}).items():
            form[field] = (io.BytesIO(content if isinstance(content, bytes) else content.read()), name)
        return self.client.post(url, data=form, content_type="multipart/form-data")


@pytest.fixture
def service_factory(emotion_model):
    """Services with the shared model loaded, behind the test client; ``.url`` is ""."""
    made = []

    def make(cfg):
        svc = build(cfg)
        use_model(svc, emotion_model)
        made.append(svc)
        return SimpleNamespace(url="", http=Client(create_app(services=svc).test_client()))
    yield make
    for svc in made:
        svc.close()


def test_health_when_ready(tmp_path, model_dir, sqlite_url, service_factory):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url))
    r = svc.http.get(f"{svc.url}/health")
    assert r.status_code == 200
    body = r.json
    assert {k: body[k] for k in ("status", "message")} == {"status": "success",
                                                          "message": "Model is ready for inference"}


def test_predict(tmp_path, model_dir, sqlite_url, service_factory):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url))
    path = make_audio(tmp_path / "angry_sample", "wav_pcm", 16000, 1, 7.0)
    with open(path, "rb") as f:
        r = svc.http.post(f"{svc.url}/predict", files={"file": ("angry_sample.wav", f)})
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


def test_predict_other_formats_and_errors(tmp_path, model_dir, sqlite_url, service_factory):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url))
    mp3 = make_audio(tmp_path / "call", "mp3", 44100, 2, 4.0)
    r = svc.http.post(f"{svc.url}/predict", files={"file": ("call.mp3", mp3.read_bytes())})
    assert r.status_code == 200 and len(r.json["segments"]) == 2

    r = svc.http.post(f"{svc.url}/predict", files={"file": ("x.wav", b"not audio" * 100)})
    assert r.status_code == 400 and "cannot decode" in r.json["error"]
    r = svc.http.post(f"{svc.url}/predict", data={"nofile": "1"})
    assert r.status_code == 400 and "'file'" in r.json["error"]
    short = make_audio(tmp_path / "short", "wav_pcm", 16000, 1, 0.5)
    r = svc.http.post(f"{svc.url}/predict", files={"file": ("s.wav", short.read_bytes())})
    assert r.status_code == 422


def test_upload_size_limit(tmp_path, model_dir, sqlite_url, service_factory):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url, server={"max_upload_bytes": 10_000}))
    r = svc.http.post(f"{svc.url}/predict", files={"file": ("big.wav", b"x" * 50_000)})
    assert r.status_code == 413 and "error" in r.json


def test_dashboard_and_metrics(tmp_path, model_dir, sqlite_url, service_factory):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url))
    assert "Red-flagged customers" in svc.http.get(f"{svc.url}/dashboard").text
    assert svc.http.get(f"{svc.url}/api/flagged").json == {"customers": []}
    assert svc.http.get(f"{svc.url}/api/calls/999").status_code == 404
    assert "callmood_webhooks_total" in svc.http.get(f"{svc.url}/metrics").text
