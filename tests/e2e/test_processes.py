"""The `callmood` processes as an operator runs them: `serve`, `serve --no-worker`,
`worker` and `migrate`, stopped with SIGTERM or killed with SIGKILL.

Receivers that only take webhooks are given no model (``model.path`` names a directory
that is not there): they need none to accept a call, and the test does not pay FunASR's
import in a process that never classifies anything."""

import json
import signal
import subprocess
import sys

import requests

from connectors.sources.generic import sign
from tests.helpers import free_port, make_audio, wait_until

HOOK = 'sources: {generic: {secret: s}}\nfetch: {allow_networks: ["127.0.0.0/8"]}\n'


def cfg_file(tmp_path, model_dir, extra="", name="config.yaml"):
    p = tmp_path / name
    if "audio:" not in extra:
        extra += "audio: {vad: energy}\n"  # tones are not speech to silero (see conftest.make_config)
    p.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {model_dir}}}\n{extra}")
    return p


def start(*args, output=False) -> subprocess.Popen:
    out = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "plugin.cli", *map(str, args)], stdout=out,
                            stderr=subprocess.STDOUT if output else subprocess.DEVNULL, text=True)


def _get(url, ready=True):
    """/health's status and message once it answers (``ready``: once it answers 200)."""
    try:
        r = requests.get(url, timeout=2)
    except requests.ConnectionError:
        return None
    if ready and r.status_code != 200:
        return None
    body = r.json()
    return {"status": body["status"], "message": body["message"]}


def _call(base, call_id):
    try:
        c = requests.get(f"{base}/api/calls/{call_id}", timeout=2).json()
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
    """One database, the processes of both deployment shapes, in the order an operator
    meets them:

    1. `migrate` creates the schema;
    2. a receiver (`serve` with the worker disabled) takes a call and is killed with
       SIGKILL right after its 202: the call is not lost;
    3. `serve` (web, worker and scheduler in one process) starts, answers /health as the
       tutorial did, processes that call, and stops cleanly on SIGTERM; a separate
       `callmood worker` starts beside it (both import FunASR at once, on both cores);
    4. scale-out: a receiver with `--no-worker` takes a call that the `worker` process
       (and no other) analyses; the worker stops cleanly on SIGTERM.
    """
    full = cfg_file(tmp_path, model_dir, HOOK)
    receiver_cfg = cfg_file(tmp_path, tmp_path / "no-model", HOOK, "receiver.yaml")
    r = subprocess.run([sys.executable, "-m", "plugin.cli", "migrate", "-c", str(full)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "newest schema" in r.stdout
    url = recordings.serve_file("/k.wav", make_audio(tmp_path / "k", "wav_pcm", 16000, 1, 4.0))

    # 2. A receiver, killed right after it accepted a call.
    killed_cfg = cfg_file(tmp_path, tmp_path / "no-model", HOOK + "worker: {enabled: false}\n", "killed.yaml")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start("serve", "-c", killed_cfg, "--port", port)
    try:
        health = wait_until(lambda: _get(base + "/health", ready=False), timeout=90)
        assert health["status"] == "error" and "is not a directory" in health["message"]
        r = post(base, "kill-1", url)
        assert r.status_code == 202
        killed_call = r.json()["call_id"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    # 3. `serve` with its worker processes it; a separate worker starts meanwhile.
    serve = start("serve", "-c", full, "--port", port, output=True)
    worker = subprocess.Popen([sys.executable, "-m", "plugin.cli", "worker", "-c", str(full)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    receiver = None
    try:
        try:
            health = wait_until(lambda: _get(base + "/health"), timeout=90)
            assert health == {"status": "success", "message": "Model is ready for inference"}
            call = wait_until(lambda: _call(base, killed_call), timeout=90)
            assert call["status"] == "analyzed" and call["segments"]
        finally:
            serve.terminate()
            out, _ = serve.communicate(timeout=30)
        assert serve.returncode == 0, out
        assert f"listening on http://127.0.0.1:{port}" in out

        # 4. Scale-out: webhooks to a receiver, the work to the worker process.
        receiver = start("serve", "-c", receiver_cfg, "--port", port, "--no-worker")
        wait_until(lambda: _get(base + "/health", ready=False), timeout=90)
        r = post(base, "w-1", url)
        assert r.status_code == 202
        call = wait_until(lambda: _call(base, r.json()["call_id"]), timeout=90)
        assert call["segments"]
        assert worker_of(full, call["id"]).split(":")[1] == str(worker.pid)
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=30)
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0 and "worker" in err
