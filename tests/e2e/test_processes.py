"""The `callmood` processes as an operator runs them: `serve`, `serve --no-worker`,
`worker` and `migrate`, stopped with SIGTERM or killed with SIGKILL.

Receivers that only take webhooks are given no model (``model.path`` names a directory
that is not there): they need none to accept a call, and the test does not pay FunASR's
import in a process that never classifies anything."""

import json
import os
import shutil
import signal
import subprocess
import sys

import requests

from connectors.sources.generic import sign
from tests.helpers import Reply, free_port, make_audio, run_cli, wait_until

HOOK = 'sources: {generic: {secret: s}}\nfetch: {allow_networks: ["127.0.0.0/8"]}\n'


def cfg_file(tmp_path, model_dir, extra="", name="config.yaml", model=""):
    p = tmp_path / name
    if "audio:" not in extra:
        extra += "audio: {vad: energy}\n"  # tones are not speech to silero (see conftest.make_config)
    p.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {model_dir}{', ' + model if model else ''}}}\n"
                 f"asr: {{enabled: false}}\n{extra}")
    return p


def start(*args, output=False) -> subprocess.Popen:
    out = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "plugin.cli", *map(str, args)], stdout=out,
                            stderr=subprocess.STDOUT if output else subprocess.DEVNULL, text=True)


def _get(url, ready=True, token=None):
    """/health's status and message once it answers (``ready``: once it answers 200); the
    reason it is not ready is shown to an admin only (``token``)."""
    try:
        r = requests.get(url, timeout=2, headers={"Authorization": f"Bearer {token}"} if token else {})
    except requests.ConnectionError:
        return None
    if ready and r.status_code != 200:
        return None
    body = r.json()
    return {"status": body["status"], "message": body["message"]}


def _call(base, call_id, token):
    try:
        c = requests.get(f"{base}/api/calls/{call_id}", timeout=2, headers={"Authorization": f"Bearer {token}"}).json()
    except requests.ConnectionError:
        return None
    return c if c.get("status") == "analyzed" else None


def post(base, call_id, url) -> requests.Response:
    body = json.dumps({"call_id": call_id, "recording_url": url, "customer_id": "c"}).encode()
    return requests.post(base + "/webhooks/generic", data=body, headers={"X-CallMood-Signature": sign(body, "s")})


def worker_of(cfg_path, call_id) -> str | None:
    """The lease owner ("host:pid:...") of the call's job, read from the database."""
    from plugin import config as config_mod
    from plugin.store import engine as db
    from plugin.store.tables import Job

    engine = db.make_engine(config_mod.load(cfg_path).database_url)
    try:
        with db.make_sessionmaker(engine)() as s:
            return s.query(Job.lease_owner).filter(Job.call_id == call_id).scalar()
    finally:
        engine.dispose()


def test_the_processes_an_operator_runs(tmp_path, model_dir, recordings):
    """One database, the processes of both deployment shapes, as an operator meets them:

    1. `migrate` creates the schema;
    2. `serve` (web, worker and scheduler in one process) and a receiver with
       `--no-worker` start; meanwhile a receiver with the worker disabled takes a call and
       is killed with SIGKILL right after its 202. That call's recording is only there
       once the receiver is dead, so it is analysed afterwards or not at all;
    3. `serve` answers /health as the tutorial did, and its own worker analyses the killed
       receiver's call: nothing was lost. A `callmood worker` started beside it, but its
       model is not in place yet (the operator copies it later), so it takes no job;
    4. `serve` stops cleanly on SIGTERM; the worker's model is put in place and it loads
       it. Scale-out: the `--no-worker` receiver takes a call that the `worker` process
       analyses; both stop cleanly on SIGTERM.
    """
    # A worker that meets the recording before the receiver is killed retries soon, and long.
    full = cfg_file(tmp_path, model_dir, HOOK + "worker: {poll_interval_s: 0.1, retry_backoff_s: 0.2, retry_max_s: 1, "
                                                "max_attempts: 60}\n")
    receiver_cfg = cfg_file(tmp_path, tmp_path / "no-model", HOOK, "receiver.yaml")
    killed_cfg = cfg_file(tmp_path, tmp_path / "no-model", HOOK + "worker: {enabled: false}\n", "killed.yaml")
    # The worker's model directory, its weights not copied yet: it imports FunASR (on the
    # other core, while `serve` does the same) and keeps trying until they are there.
    late_model = tmp_path / "late-model"
    shutil.copytree(model_dir, late_model)
    (late_model / "model.pt").write_bytes(b"still copying")
    worker_cfg = cfg_file(tmp_path, late_model, HOOK + "worker: {poll_interval_s: 0.1}\n", "worker.yaml",
                          model="retry_interval_s: 0.5")
    r = run_cli("migrate", "-c", full)
    assert r.returncode == 0 and "newest schema" in r.stdout
    # Every process shares the database, and data_dir's secret key: one token for all.
    r = run_cli("tokens", "create", "e2e", "--role", "admin", "-c", full)
    assert r.returncode == 0
    token = r.stdout.strip()
    recordings.routes["/k.wav"] = Reply(503, "not yet")
    audio = make_audio(tmp_path / "k", "wav_pcm", 16000, 1, 4.0)
    url = recordings.url + "/k.wav"

    serve_port, receiver_port, killed_port = free_port(), free_port(), free_port()
    serve_url, receiver_url, killed_url = (f"http://127.0.0.1:{p}" for p in (serve_port, receiver_port, killed_port))
    serve = start("serve", "-c", full, "--port", serve_port, output=True)
    worker_log = open(tmp_path / "worker.log", "w")  # a file: it logs each try to load its model
    worker = subprocess.Popen([sys.executable, "-m", "plugin.cli", "worker", "-c", str(worker_cfg)],
                              stdout=subprocess.DEVNULL, stderr=worker_log, text=True)
    receiver = start("serve", "-c", receiver_cfg, "--port", receiver_port, "--no-worker")
    try:
        # 2. A receiver, killed right after it accepted a call.
        killed = start("serve", "-c", killed_cfg, "--port", killed_port)
        try:
            assert wait_until(lambda: _get(killed_url + "/health", ready=False), timeout=90) == \
                {"status": "error", "message": "not ready"}  # no reason for strangers
            health = _get(killed_url + "/health", ready=False, token=token)
            assert health["status"] == "error" and "is not a directory" in health["message"]
            r = post(killed_url, "kill-1", url)
            assert r.status_code == 202
            killed_call = r.json()["call_id"]
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
        recordings.serve_file("/k.wav", audio)

        # 3. `serve` answers, and its worker processes the call.
        try:
            health = wait_until(lambda: _get(serve_url + "/health"), timeout=90)
            assert health == {"status": "success", "message": "Model is ready for inference"}
            call = wait_until(lambda: _call(serve_url, killed_call, token), timeout=90)
            assert call["status"] == "analyzed" and call["segments"]
            assert worker_of(full, killed_call).split(":")[1] == str(serve.pid)
        finally:
            serve.terminate()
            out, _ = serve.communicate(timeout=30)
        assert serve.returncode == 0, out
        assert f"listening on http://127.0.0.1:{serve_port}" in out
        # Tokens exist but no user does: serve says how to make the first admin.
        [hint] = [line for line in out.splitlines() if line.startswith("No users yet")]
        assert hint.endswith(f"callmood users add admin --role admin --config {full}")

        # 4. The worker's model is in place now; scale-out: webhooks to the receiver, the
        # work to the worker process.
        shutil.copyfile(model_dir / "model.pt", late_model / "model.pt.part")
        os.replace(late_model / "model.pt.part", late_model / "model.pt")
        wait_until(lambda: _get(receiver_url + "/health", ready=False), timeout=90)
        r = post(receiver_url, "w-1", url)
        assert r.status_code == 202
        call = wait_until(lambda: _call(receiver_url, r.json()["call_id"], token), timeout=90)
        assert call["segments"]
        assert worker_of(full, call["id"]).split(":")[1] == str(worker.pid)
    finally:
        for proc in (serve, receiver):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        worker.terminate()
        worker.wait(timeout=30)
        worker_log.close()
    err = (tmp_path / "worker.log").read_text()
    assert receiver.returncode == 0
    assert worker.returncode == 0 and "worker" in err
