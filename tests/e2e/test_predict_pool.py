"""Hostile uploads to /predict never starve the webhook receiver: eight clients keep
uploading recordings that take seconds to decode, and a signed webhook still gets its
202 within 100 ms. The app is served as `callmood serve` serves it: waitress with
``server.threads`` threads."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from waitress import create_server

from plugin.audio.decode import ffmpeg_exe
from plugin.services import build
from plugin.web.app import create_app
from tests.conftest import api_token, event, make_config, signed, use_model

UPLOADERS = 8


def slow_to_decode(path: Path) -> bytes:
    """Two channels (audio.max_channels) of 2.5 minutes at 384 kHz: a 1 MB FLAC that takes
    ffmpeg seconds to decode and resample."""
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=384000:cl=stereo", "-t", "150", "-c:a", "flac", str(path)], check=True)
    return path.read_bytes()


@contextmanager
def waitress_serving(app, threads: int):
    server = create_server(app, host="127.0.0.1", port=0, threads=threads)
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.task_dispatcher.shutdown()
        server.close()


# The attackers run in a process of their own at the lowest priority, as if on another
# machine: in the test's process their threads would compete with the server for the GIL,
# and at normal priority for this 2-core box's CPUs, which measures the test, not the service.
UPLOADER = r"""
import sys, threading, requests
base, token, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bomb = open(path, "rb").read()
stop = threading.Event()
lock = threading.Lock()

def upload_again_and_again():
    with requests.Session() as http:
        http.trust_env = False
        while not stop.is_set():
            try:
                r = http.post(base + "/predict", files={"file": ("bomb.flac", bomb)},
                              headers={"Authorization": "Bearer " + token}, timeout=120)
            except requests.RequestException as exc:
                line = "error " + exc.__class__.__name__
            else:
                line = f"{r.status_code} {r.headers.get('Retry-After')}"
            with lock:
                print(line, flush=True)
            if line.startswith("429"):
                stop.wait(0.01)  # and straight back

threads = [threading.Thread(target=upload_again_and_again) for _ in range(n)]
for t in threads:
    t.start()
sys.stdin.read()  # until the test closes our stdin
stop.set()
for t in threads:
    t.join(120)
"""


def test_hostile_uploads_never_starve_the_webhook_receiver(tmp_path, model_dir, sqlite_url, emotion_model,
                                                          recordings):
    cfg = make_config(tmp_path, model_dir, sqlite_url)  # 8 threads; 1 upload analysed, 2 waiting
    svc = build(cfg)
    use_model(svc, emotion_model)
    app = create_app(services=svc)
    token = api_token(svc, "admin")
    slow_to_decode(tmp_path / "bomb.flac")
    answers: list[str] = []
    try:
        with waitress_serving(app, cfg.server.threads) as base:
            hook = requests.Session()
            hook.trust_env = False
            assert hook.post(base + "/webhooks/generic", **signed(event("warm-up", recordings.url))).status_code == 202
            attackers = subprocess.Popen(
                ["nice", "-n", "19", sys.executable, "-c", UPLOADER, base, token, str(tmp_path / "bomb.flac"),
                 str(UPLOADERS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                for line in attackers.stdout:  # until every place is taken
                    answers.append(line.strip())
                    if line.startswith("429"):
                        break
                took = []
                for i in range(10):
                    start = time.perf_counter()
                    r = hook.post(base + "/webhooks/generic", **signed(event(f"during-{i}", recordings.url)))
                    took.append(time.perf_counter() - start)
                    assert r.status_code == 202, r.text
                    time.sleep(0.2)
            finally:
                out, _ = attackers.communicate("", timeout=180)
                answers += out.split("\n")
            hook.close()
    finally:
        svc.close()
    assert max(took) < 0.1, [round(t, 3) for t in took]
    answers = [a.split() for a in answers if a.strip()]
    refused = [retry for code, retry in answers if code == "429"]
    assert refused and all(retry.isdigit() for retry in refused)
    # The uploads that had their turn were decoded and judged: silence has no speech.
    assert {code for code, _ in answers} - {"429"} == {"422"}
