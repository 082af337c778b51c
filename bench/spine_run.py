"""One real run of the whole path, with the time each stage took.

Starts `callmood serve` as a separate process with an emotion2vec model directory
built with random weights (FunASR's own class), local HTTP servers standing in for
the recording store, the CRM and the WeCom robot, sends one signed webhook, and
prints what came out at each end.

    .venv/bin/python bench/spine_run.py [--geometry tiny|base|large] [--seconds 120]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.sources.generic import sign  # noqa: E402
from plugin.model.modeldir import build_random_model_dir  # noqa: E402
from tests.helpers import FakeServer, Reply, free_port, make_audio, wait_until, wecom_robot  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometry", default="tiny", choices=["tiny", "base", "large"])
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the stereo test call")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="callmood-spine-"))
    recordings, crm, wecom = FakeServer(), FakeServer(), FakeServer()
    crm.default = Reply(201, {"ok": True})
    wecom.routes["/cgi-bin/webhook/send"] = wecom_robot

    model = build_random_model_dir(work / "model", args.geometry)
    audio = make_audio(work / "call-1001", "mp3", 8000, 2, args.seconds)
    url = recordings.serve_file("/recordings/call-1001.mp3", audio)
    port = free_port()
    config = work / "config.yaml"
    config.write_text(json.dumps({
        "data_dir": str(work / "var"),
        "server": {"port": port, "public_url": f"http://127.0.0.1:{port}"},
        "model": {"path": str(model)},
        "sources": {"generic": {"secret": "demo-secret"}},
        "fetch": {"allow_networks": ["127.0.0.0/8"]},
        "rules": {"path": str(ROOT / "tests" / "rules")},  # fires on any emotion: random weights
        "worker": {"poll_interval_s": 0.05},
        "deliveries": {"poll_interval_s": 0.05},
        "sinks": {
            "crm": {"type": "rest", "auth_header": "Bearer demo-token",
                    "url": crm.url + "/api/customers/{{ call.customer_id }}/tags"},
            "wecom": {"type": "wecom_robot", "url": wecom.url + "/cgi-bin/webhook/send?key=demo",
                      "mentioned_list": ["supervisor01"]},
        },
    }))
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "plugin.cli", "serve", "-c", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _ok(base + "/health"), timeout=300, interval=0.2)
        print(f"service ready (model {args.geometry}, random weights) in {time.perf_counter() - t0:.1f}s")

        body = json.dumps({
            "call_id": "call-1001", "recording_url": url, "customer_id": "cust-9",
            "customer_phone": "+8613800000000", "agent_id": "agent-7", "queue": "support",
            "ticket_id": "T-55", "channels": {"0": "agent", "1": "customer"}}).encode()
        sig = sign(body, "demo-secret")
        print(f"\n>>> POST /webhooks/generic  X-CallMood-Signature: {sig[:24]}...\n{body.decode()}")
        t = time.perf_counter()
        r = requests.post(base + "/webhooks/generic", data=body, headers={"X-CallMood-Signature": sig})
        print(f"<<< {r.status_code} {r.text.strip()}  ({(time.perf_counter() - t) * 1000:.1f} ms)")
        call_id = r.json()["call_id"]

        def delivered():
            c = requests.get(f"{base}/api/calls/{call_id}").json()
            ds = [d for a in c["alerts"] for d in a["deliveries"]]
            return ds and all(d["status"] == "delivered" for d in ds) and c
        call = wait_until(delivered, timeout=600, interval=0.1)
        end_to_end = time.perf_counter() - t

        [crm_req] = crm.requests
        print(f"\n>>> CRM: {crm_req.method} {crm_req.path}")
        print(f"    Authorization: {crm_req.headers['Authorization']}  "
              f"Idempotency-Key: {crm_req.headers['Idempotency-Key']}")
        print("    " + json.dumps(crm_req.json(), ensure_ascii=False))
        [robot] = wecom.requests
        print(f"\n>>> WeCom robot: POST {robot.path}  ({len(robot.json()['markdown']['content'].encode())} bytes of content)")
        print(json.dumps(robot.json(), ensure_ascii=False, indent=1))

        per_role = ", ".join(f"{k}: {v['segments']}" for k, v in call["summary"]["roles"].items())
        print(f"\ncall of {call['duration_s']:.1f}s, {len(call['segments'])} segments ({per_role})")
        print("stage timings (s):")
        for stage in ("fetch", "decode", "segment_and_infer", "judge", "store_and_plan", "received_to_analyzed"):
            print(f"  {stage:<22} {call['timings'][stage]:8.3f}")
        for a in call["alerts"]:
            for d in a["deliveries"]:
                print(f"  delivered to {d['sink']:<13} at {d['delivered_at']} after {d['attempts']} attempt(s)")
        print(f"  {'webhook -> both deliveries':<22} {end_to_end:8.3f}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for s in (recordings, crm, wecom):
            s.close()


def _ok(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


if __name__ == "__main__":
    main()
