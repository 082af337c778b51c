"""SIGTERM at any moment: `callmood serve` and `callmood worker` stop taking work, hand
back what is still in flight after `worker.stop_grace_s` (its leases released in the
database, so nothing waits out a lease after a deploy) and exit within a bounded time.

Two processes in all (each start costs FunASR's import): a `serve` stopped while its model
loads, and a `worker` stopped in the middle of a job and of a delivery; this test process
plays the worker that takes over."""

import signal
import subprocess
import sys
import time

import requests
from sqlalchemy import select

from plugin import config as config_mod
from plugin.store.tables import AlertRow, Delivery, Job
from tests.conftest import HERE, event
from tests.e2e.test_processes import HOOK, cfg_file, start
from tests.helpers import Reply, free_port, make_audio, run_cli, wait_until, wecom_robot


def test_sigterm_while_the_model_loads(tmp_path, model_dir):
    """The process exits at once, cleanly: before this was fixed it stayed up answering
    nothing until a second signal."""
    cfg = cfg_file(tmp_path, model_dir, HOOK)
    assert run_cli("migrate", "-c", cfg).returncode == 0
    token = run_cli("tokens", "create", "stops", "--role", "admin", "-c", cfg).stdout.strip()
    port = free_port()
    serve = start("serve", "-c", cfg, "--port", port, output=True)
    try:
        health = wait_until(lambda: _detail(f"http://127.0.0.1:{port}/health", token), timeout=60, interval=0.02)
        assert health["model"]["state"] == "loading", health  # FunASR and torch are being imported
        sent = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert serve.returncode == 0, out
    assert took < 15, f"took {took:.1f}s to stop"
    assert "stopping: 0 call(s) and 0 delivery(ies) in flight" in out


def _detail(url, token):
    try:
        r = requests.get(url, timeout=2, headers={"Authorization": f"Bearer {token}"})
    except requests.ConnectionError:
        return None
    return r.json().get("detail")


def test_sigterm_hands_back_the_job_and_the_delivery_in_flight(tmp_path, model_dir, fake, service_factory):
    recordings, crm, wecom = fake(), fake(), fake()
    wecom.routes["/cgi-bin/webhook/send"] = wecom_robot
    # The CRM answers the first send after 45 s (within deliveries.timeout_s), the resend at once.
    crm.routes["/api/customers/cust-42/tags"] = [Reply(200, {"ok": True}, delay_s=45), Reply(200, {"ok": True})]
    quick = make_audio(tmp_path / "quick", "wav_pcm", 16000, 1, 4.0)
    recordings.serve_file("/quick.wav", quick)
    # The slow call's recording server answers after 80 s the first time (within fetch limits).
    recordings.routes["/slow.wav"] = [Reply(200, quick.read_bytes(), delay_s=80), Reply(200, quick.read_bytes())]
    path = cfg_file(tmp_path, model_dir, f"""\
sources: {{generic: {{secret: s}}}}
rules: {{path: {HERE / "rules"}}}
fetch: {{allow_networks: ["127.0.0.0/8"], timeout_s: 90, max_seconds: 100}}
worker: {{poll_interval_s: 0.1, stop_grace_s: 1}}
deliveries: {{poll_interval_s: 0.1, timeout_s: 50, lease_s: 60}}
sinks:
  crm: {{type: rest, url: "{crm.url}/api/customers/{{{{ call.customer_id }}}}/tags"}}
  wecom: {{type: wecom_robot, url: "{wecom.url}/cgi-bin/webhook/send?key=k"}}
""")
    # This process: the webhook receiver now, the worker that takes over later.
    takeover = service_factory(config_mod.load(path), start_runtime=False)
    with open(tmp_path / "worker.log", "w") as log:  # the worker has its own copy of the file
        worker = subprocess.Popen([sys.executable, "-m", "plugin.cli", "worker", "-c", str(path)],
                                  stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        quick_id = takeover.post_event(event("quick-1", recordings.url + "/quick.wav"), secret="s").json()["call_id"]
        slow_id = takeover.post_event(event("slow-1", recordings.url + "/slow.wav"), secret="s").json()["call_id"]
        # The worker analysed the quick call and is sending its CRM tag; it is downloading the slow one.
        wait_until(lambda: crm.requests and any(r.path == "/slow.wav" for r in recordings.requests), timeout=120)
        assert takeover.call(quick_id)["status"] == "analyzed"
        slow_job, crm_delivery = _job(takeover, slow_id), _crm_delivery(takeover, quick_id)
        assert (slow_job.status, slow_job.attempts) == ("running", 1)
        assert slow_job.lease_owner.split(":")[1] == str(worker.pid)
        assert (crm_delivery.status, crm_delivery.attempts) == ("sending", 1)

        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        took = time.monotonic() - sent
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    err = (tmp_path / "worker.log").read_text()
    assert worker.returncode == 0, err
    assert took < 1 + 10, f"took {took:.1f}s to stop"  # stop_grace_s + a margin
    assert f"handed back job(s) [{slow_job.id}] and delivery(ies) [{crm_delivery.id}]" in err

    # Both are due again at once, their leases released, the interrupted attempt not counted.
    slow_job, crm_delivery = _job(takeover, slow_id), _crm_delivery(takeover, quick_id)
    assert (slow_job.status, slow_job.attempts, slow_job.lease_owner, slow_job.lease_expires_at) == \
        ("queued", 0, None, None)
    assert (crm_delivery.status, crm_delivery.attempts, crm_delivery.lease_owner) == ("pending", 0, None)

    # Another worker takes them at once, not after a 10-minute lease.
    takeover.start_runtime()
    call = takeover.wait_call(slow_id, timeout=30)
    assert call["status"] == "analyzed" and [(j["status"], j["attempts"]) for j in call["jobs"]] == [("done", 1)]
    assert _job(takeover, slow_id).lease_owner == takeover.runtime.owner
    delivered = wait_until(lambda: (d := _crm_delivery(takeover, quick_id)).status == "delivered" and d, timeout=30)
    assert delivered.attempts == 1
    # Sent twice (the first answer never came back), with one idempotency key: the CRM can tell.
    key = f"callmood-delivery-{delivered.id}"
    assert [r.headers["Idempotency-Key"] for r in crm.requests].count(key) == 2


def _job(service, call_id) -> Job:
    with service.svc.sessions() as s:
        return s.execute(select(Job).where(Job.call_id == call_id)).scalar_one()


def _crm_delivery(service, call_id) -> Delivery:
    with service.svc.sessions() as s:
        return s.execute(select(Delivery).join(AlertRow).where(AlertRow.call_id == call_id,
                                                               Delivery.sink == "crm")).scalar_one()
