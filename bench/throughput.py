"""Whole-call throughput: the real `callmood` processes, signed webhooks, deliveries back.

    .venv/bin/python bench/throughput.py [--calls 12] [--minutes 2-10] [--workers 1,2,4]
                                         [--db sqlite,postgres] [--geometry base] [--device cpu|cuda]
                                         [--load-rate 500] [--load-seconds 60] [--rounds 1]
                                         [--stock-calls 0] [--markdown docs/benchmarks.md]

Smallest useful run (minutes on 2 cores):
    .venv/bin/python bench/throughput.py --calls 4 --minutes 0.3-0.6 --workers 1 --load-seconds 5 --geometry tiny

What runs, per database (SQLite file; PostgreSQL: a fresh database per run, dropped after)
and per number K of worker processes:

  stand-in     one threaded HTTP server on 127.0.0.1 (this process): serves the recordings,
               plays the CRM (rest sink) and the WeCom robot ({"errcode": 0}), and notes when
               each call's deliveries arrive (by the customer id, unique per call)
  receiver     `callmood serve --no-worker` (model.threads 1: it classifies nothing, but it
               loads the model, for /predict and /health)
  workers      K x `callmood worker`, model.threads = max(1, CPUs // K) each
  config       the generic source with a secret, fetch.allow_networks [127.0.0.0/8], the
               random-weight model, rules/trial (fires on any speech: every call ends in a CRM
               tag and a WeCom alert), deliveries and workers polling every 0.2 s, audio as
               shipped (silero VAD)

Measured, once /health answers 200 and every worker has logged its model loaded (so the
model's load time is not counted): all N webhooks are POSTed at once, signed; the timer
runs from the first POST to the last delivery of the last call. Calls per hour, audio hours
per hour, webhook-to-last-delivery per call (p50, p95), peak RSS (VmHWM) of the receiver and
of each worker, read from /proc just before they are stopped; ffmpeg runs as a short-lived
child of a worker per call: its RSS is sampled every 0.25 s (it can miss a peak) and given
apart.

Load phase, started right after the N webhooks, while the workers work: --load-rate signed
webhooks per second for --load-seconds, distinct call ids, from a process of its own on an
open-loop schedule (each request's latency counts from its scheduled time, so a stalled
server cannot hide behind a waiting client: coordinated omission). Their recording URL is
one the stand-in answers 404: the download is refused at once, not retried, so the 30,000
calls a full load phase creates cost the workers a GET and a failed job each, not minutes of
ffmpeg and VAD; the job queue is first in, first out, so they are taken only once every
measured call is. The load measures the receiver's intake, not analysis.

Stock, for the ratio (the house rule): the tutorial's way over the same calls in one process:
decode, each channel cut into 3 s pieces, funasr AutoModel.generate on the pieces (batch 1,
FunASR's default 4 threads), no VAD. --stock-calls M runs it on the first M calls only (its
rate is per audio second, so the ratio holds). With --rounds R > 1, stock and the service
runs alternate, round after round, and each figure is the median [range] of the rounds.

Progress goes to stderr, the tables to stdout; --markdown appends them, with the command,
machine, versions and date. Nothing is printed that the run did not measure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import platform
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._calls import CallFile, make_calls  # noqa: E402
from bench._databases import database, postgres_problem  # noqa: E402
from bench._report import command_line, table_text  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "callmood-bench"  # recordings and model dirs, reused across runs
SECRET = "bench-secret"
PG_DEFAULT = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
SINKS = ("crm", "wecom")  # the actions of rules/trial/trial.yaml: every call ends in one delivery to each
WINDOW_S = 3
CUSTOMER_RE = re.compile(r"Customer: (\w+)")


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- parent

def main() -> None:
    args = parse_args()
    if args.load_child:
        return load_child(json.loads(args.load_child))
    if args.stock_child:
        return stock_child(json.loads(args.stock_child))

    env = environment(args.device)
    progress(f"machine: {env['cpu']}, {env['cpus']} CPUs; device {env['device_name']}; "
             f"torch {env['torch']}, funasr {env['funasr']}")
    model_dir = model_directory(args.geometry)
    calls = make_calls(CACHE, args.calls, args.minutes, args.seed, progress)
    dbs = databases(args)
    standin = StandIn(calls)
    results: list[dict] = []  # one per service run
    stocks: list[dict] = []   # one per round
    try:
        for rnd in range(args.rounds):
            if args.stock_calls >= 0:
                subset = calls[:args.stock_calls or len(calls)]
                progress(f"round {rnd + 1}: stock on {len(subset)} call(s) ...")
                stocks.append(run_stock(subset, model_dir, env["device"]))
                progress(f"round {rnd + 1}: stock {stocks[-1]['audio_s']:.0f} audio-s in {stocks[-1]['seconds']:.1f}s")
            for db_name, db_url in dbs:
                for k in args.workers:
                    progress(f"round {rnd + 1}: {db_name}, {k} worker(s) ...")
                    r = run_service(args, env, model_dir, calls, standin, db_name, db_url, k, rnd)
                    results.append(r)
                    progress(f"round {rnd + 1}: {db_name}, {k} worker(s): {r['calls_done']}/{len(calls)} calls "
                             f"in {r['wall_s']:.1f}s")
    finally:
        standin.close()
    text = report(args, env, calls, dbs, results, stocks)
    print(text, flush=True)
    if args.markdown:
        write_markdown(Path(args.markdown), env, text)
        progress(f"appended to {args.markdown}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=12, help="calls per run (half mu-law WAV, half MP3)")
    ap.add_argument("--minutes", type=minutes_range, default=(2.0, 10.0), help="call lengths, e.g. 2-10")
    ap.add_argument("--seed", type=int, default=1, help="picks lengths and offsets of the calls")
    ap.add_argument("--workers", type=int_list, default=[1, 2, 4], help="worker process counts, e.g. 1,2,4")
    ap.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    ap.add_argument("--postgres", default=os.environ.get("CALLMOOD_TEST_POSTGRES", PG_DEFAULT),
                    help="an admin URL: a database is created (and dropped) per run")
    ap.add_argument("--geometry", default="base", choices=["tiny", "base", "large"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--concurrency", type=int, default=2, help="worker.concurrency (calls in flight per worker)")
    ap.add_argument("--load-rate", type=float, default=500.0, help="webhooks per second in the load phase")
    ap.add_argument("--load-seconds", type=float, default=60.0, help="length of the load phase (0: none)")
    ap.add_argument("--load-connections", type=int, default=64, help="the load client's open connections")
    ap.add_argument("--load-drain", type=float, default=10.0,
                    help="seconds the load client may still send after its schedule ends")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of stock and the service runs")
    ap.add_argument("--stock-calls", type=int, default=0, help="stock on the first M calls (0: all; -1: no stock)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for a run's deliveries")
    ap.add_argument("--markdown", default="", help="append the results to this Markdown file")
    ap.add_argument("--load-child", default="", help=argparse.SUPPRESS)   # internal: the load process
    ap.add_argument("--stock-child", default="", help=argparse.SUPPRESS)  # internal: the stock process
    args = ap.parse_args()
    if args.calls < 1 or args.rounds < 1 or any(k < 1 for k in args.workers):
        ap.error("--calls, --rounds and every --workers count must be at least 1")
    bad = set(d.strip() for d in args.db.split(",")) - {"sqlite", "postgres"}
    if bad:
        ap.error(f"--db: unknown {', '.join(sorted(bad))}; choose sqlite, postgres or both")
    return args


def minutes_range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    try:
        a, b = float(lo), float(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range of minutes such as 2-10") from None
    if not 0 < a <= b:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < low <= high")
    return a, b


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers such as 1,2,4") from None


def environment(device: str) -> dict:
    """The machine, versions and device; torch is asked in a child (the parent stays torch-free)."""
    models = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
              if ln.startswith("model name")]
    probe = ("import json, torch; c = torch.cuda.is_available(); "
             "print(json.dumps([c, torch.cuda.get_device_name(0) if c else '', torch.__version__]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    cuda, gpu, torch_v = json.loads(out.stdout.strip().splitlines()[-1])
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        sys.exit("--device cuda, but torch sees no CUDA device")
    cpu = models[0] if models else platform.processor() or "unknown CPU"
    return {"cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "device": device,
            "device_name": gpu if device == "cuda" else cpu, "torch": torch_v, "funasr": version("funasr"),
            "python": platform.python_version()}


def model_directory(geometry: str) -> Path:
    """A random-weight model dir (FunASR's own class), cached; made by `callmood make-random-model`."""
    path = CACHE / f"model-{geometry}"
    if not (path / "model.pt").exists():
        progress(f"building a random-weight {geometry} model in {path} ...")
        tmp = path.with_name(path.name + ".part")
        subprocess.run([callmood_exe(), "make-random-model", str(tmp), "--geometry", geometry], check=True,
                       capture_output=True)
        tmp.rename(path)
    return path


def callmood_exe() -> str:
    exe = Path(sys.executable).with_name("callmood")
    return str(exe) if exe.exists() else "callmood"


def databases(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(name, admin URL) per database asked for; PostgreSQL left out, with a note, if unreachable."""
    out: list[tuple[str, str | None]] = []
    for name in (d.strip() for d in args.db.split(",") if d.strip()):
        if name == "sqlite":
            out.append(("sqlite", None))
            continue
        problem = postgres_problem(args.postgres)
        if problem is None:
            out.append(("postgres", args.postgres))
        else:
            progress(f"PostgreSQL skipped: unreachable at {scrub_url(args.postgres)}: {problem}")
    if not out:
        sys.exit("no database to run on")
    return out


def scrub_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


# --------------------------------------------------------------------------- stand-in

class StandIn:
    """Recordings, CRM and WeCom robot on 127.0.0.1; notes when each customer's deliveries arrive."""

    def __init__(self, calls: list[CallFile]):
        self.files = {f"/rec/{Path(c.path).name}": Path(c.path) for c in calls}
        self.lock = threading.Lock()
        self.arrived: dict[str, dict[str, float]] = {}  # customer id -> sink -> first arrival (monotonic)
        self.unmatched = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = outer.files.get(self.path.split("?")[0])
                if path is None:  # the load phase's recordings: refused at once
                    return self._answer(404, b'{"error": "no such recording"}')
                data = path.read_bytes()
                self._answer(200, data, "audio/mpeg" if path.suffix == ".mp3" else "audio/wav")

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                if self.path.startswith("/cgi-bin/webhook/send"):
                    sink, found = "wecom", CUSTOMER_RE.search(raw.decode("utf-8", "replace"))
                    customer = found.group(1) if found else None
                    answer = b'{"errcode": 0, "errmsg": "ok"}'
                else:  # /api/customers/<id>/tags
                    parts = self.path.split("/")
                    sink, customer = "crm", parts[3] if len(parts) > 4 else None
                    answer = b'{"ok": true}'
                outer.note(customer, sink, now)
                self._answer(200, answer)

            do_PUT = do_PATCH = do_POST

            def _answer(self, status: int, data: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A worker that drops a kept-alive connection is no error of ours: no traceback per drop.
        self.httpd.handle_error = lambda request, client_address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def note(self, customer: str | None, sink: str, when: float) -> None:
        with self.lock:
            if customer is None:
                self.unmatched += 1
            else:
                self.arrived.setdefault(customer, {}).setdefault(sink, when)

    def reset(self) -> None:
        with self.lock:
            self.arrived, self.unmatched = {}, 0

    def done(self, customer: str) -> float | None:
        """When the last of the customer's expected deliveries arrived, or None."""
        with self.lock:
            got = self.arrived.get(customer, {})
            return max(got[s] for s in SINKS) if all(s in got for s in SINKS) else None

    def recording_url(self, call: CallFile) -> str:
        return f"{self.url}/rec/{Path(call.path).name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- one service run

def config_yaml(data_dir: Path, db_url: str, model_dir: Path, device: str, threads: int, concurrency: int,
                standin: str) -> str:
    cfg = {
        "data_dir": str(data_dir),
        "log_level": "INFO",  # a worker logs "model ... loaded in": the run waits for that line
        "database": {"url": db_url},
        "model": {"path": str(model_dir), "device": device, "threads": threads},
        "rules": {"path": str(ROOT / "rules" / "trial")},
        "sources": {"generic": {"secret": SECRET}},
        "fetch": {"allow_networks": ["127.0.0.0/8"]},
        "worker": {"poll_interval_s": 0.2, "concurrency": concurrency, "stop_grace_s": 1},
        "deliveries": {"poll_interval_s": 0.2},
        "sinks": {"crm": {"type": "rest", "url": standin + "/api/customers/{{ call.customer_id }}/tags"},
                  "wecom": {"type": "wecom_robot", "url": standin + "/cgi-bin/webhook/send?key=bench"}},
    }
    return json.dumps(cfg, indent=1)  # JSON is YAML


def run_service(args, env, model_dir, calls, standin: StandIn, db_name: str, admin_url: str | None,
                k: int, rnd: int) -> dict:
    standin.reset()
    threads = max(1, env["cpus"] // k)
    with tempfile.TemporaryDirectory(prefix="callmood-throughput-") as tmp, database(admin_url, tmp) as db_url:
        work = Path(tmp)
        paths = {}
        for role, n in (("receiver", 1), ("worker", threads)):
            paths[role] = work / f"{role}.yaml"
            paths[role].write_text(config_yaml(work / "var", db_url, model_dir, env["device"], n,
                                               args.concurrency, standin.url))
        # Migrates the database before any process starts, and gives the API token for diagnosis.
        made = subprocess.run([callmood_exe(), "tokens", "create", "bench", "--role", "admin",
                               "-c", str(paths["worker"])], capture_output=True, text=True, cwd=tmp)
        if made.returncode != 0:
            sys.exit(f"callmood tokens create failed: {made.stderr.strip()[-500:]}")
        token = made.stdout.strip().splitlines()[-1]
        port = free_port()
        procs = [Proc("receiver", [callmood_exe(), "serve", "--no-worker", "-c", str(paths["receiver"]),
                                   "--port", str(port)], work)]
        procs += [Proc(f"worker {i + 1}", [callmood_exe(), "worker", "-c", str(paths["worker"])], work)
                  for i in range(k)]
        sampler = ChildSampler([p for p in procs if p.name.startswith("worker")])
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(procs, base)
            sampler.start()
            r = measure(args, calls, standin, base, token, rnd, db_name, k)
            r.update(db=db_name, workers=k, threads=threads, round=rnd,
                     receiver_rss_mb=procs[0].hwm_mb(), worker_rss_mb=[p.hwm_mb() for p in procs[1:]])
        finally:
            sampler.stop()
            for p in procs:
                p.stop()
        r["ffmpeg_peak_mb"] = sampler.peak_kb / 1024
        return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A `callmood` process, its stdout and stderr in a log file of its own."""

    def __init__(self, name: str, cmd: list[str], work: Path):
        self.name = name
        self.log = work / (name.replace(" ", "-") + ".log")
        with open(self.log, "w") as f:
            self.popen = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=work)
        self._hwm_kb = 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.text().strip().splitlines()[-lines:])

    def hwm_mb(self) -> float:
        """The kernel's high-water mark of the process's RSS (VmHWM), in MB; 0 once it is gone."""
        try:
            self._hwm_kb = max(self._hwm_kb, read_status(self.popen.pid).get("VmHWM", 0))
        except OSError:
            pass
        return self._hwm_kb / 1024

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                progress(f"{self.name} did not stop within 20 s of SIGTERM: killed")
                self.popen.kill()
                self.popen.wait()


def read_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


class ChildSampler:
    """The highest RSS of any child of the given processes (ffmpeg), sampled every 0.25 s."""

    def __init__(self, procs: list[Proc]):
        self.pids = [p.popen.pid for p in procs]
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for pid in self.pids:
                for children in Path(f"/proc/{pid}/task").glob("*/children"):
                    try:
                        for child in children.read_text().split():
                            # Only ffmpeg itself: between fork and exec a child shows its parent's RSS.
                            if "ffmpeg" in Path(f"/proc/{child}/comm").read_text():
                                self.peak_kb = max(self.peak_kb, read_status(int(child)).get("VmRSS", 0))
                    except OSError:  # the thread or the child just ended
                        pass


def wait_ready(procs: list[Proc], base: str, timeout: float = 600.0) -> None:
    """/health 200 from the receiver and "model ... loaded" from every worker; a process that
    exits first ends the benchmark with its log's last lines."""
    import requests

    deadline = time.monotonic() + timeout
    pending = {p.name for p in procs}
    while pending:
        for p in procs:
            if p.popen.poll() is not None:
                sys.exit(f"{p.name} exited ({p.popen.returncode}) before it was ready:\n{p.tail()}")
        if "receiver" in pending:
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    pending.discard("receiver")
        for p in procs[1:]:
            if p.name in pending and re.search(r"model .* loaded in", p.text()):
                pending.discard(p.name)
        if time.monotonic() > deadline:
            sys.exit(f"not ready within {timeout:.0f}s: {', '.join(sorted(pending))}\n"
                     + "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs if p.name in pending))
        time.sleep(0.2)


def webhook(call_id: str, customer: str, url: str) -> bytes:
    return json.dumps({"call_id": call_id, "recording_url": url, "customer_id": customer,
                       "customer_phone": "+8613800000000", "agent_id": "agent-7", "queue": "support",
                       "ticket_id": "T-" + call_id, "channels": {"0": "agent", "1": "customer"}}).encode()


def signature(body: bytes) -> str:
    """What connectors.sources.generic.sign makes (kept here: the load process imports nothing of ours)."""
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def measure(args, calls: list[CallFile], standin: StandIn, base: str, token: str, rnd: int, db: str,
            k: int) -> dict:
    import requests

    http = requests.Session()
    customers = [f"cust{i:04d}" for i in range(len(calls))]
    posted: list[float] = []
    ids: list[int | None] = []
    t0 = time.monotonic()
    for call, customer in zip(calls, customers):
        body = webhook(f"call{call.index:04d}", customer, standin.recording_url(call))
        posted.append(time.monotonic())
        r = http.post(base + "/webhooks/generic", data=body, timeout=30,
                      headers={"Content-Type": "application/json", "X-CallMood-Signature": signature(body)})
        if r.status_code != 202:
            sys.exit(f"webhook for call {call.index} answered {r.status_code}: {r.text[:300]}")
        ids.append(r.json().get("call_id"))
    loader = None
    if args.load_seconds > 0:
        spec = {"base": base, "rate": args.load_rate, "seconds": args.load_seconds,
                "connections": args.load_connections, "drain": args.load_drain,
                "recording": standin.url + "/missing", "prefix": f"load-{db}-{k}-{rnd}"}
        loader = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--load-child", json.dumps(spec)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = t0 + args.timeout
    finished: dict[int, float] = {}
    while len(finished) < len(calls) and time.monotonic() < deadline:
        for i, customer in enumerate(customers):
            if i not in finished and (when := standin.done(customer)) is not None:
                finished[i] = when
        time.sleep(0.1)
    r: dict = {"calls_done": len(finished), "audio_s": sum(c.seconds for c in calls)}
    if len(finished) < len(calls):
        r["unfinished"] = diagnose(http, base, token, calls, ids, finished)
        progress(f"timeout after {args.timeout:.0f}s: " + "; ".join(r["unfinished"]))
    last = max(finished.values()) if finished else time.monotonic()
    r["wall_s"] = last - posted[0]
    r["latencies_s"] = [finished[i] - posted[i] for i in sorted(finished)]
    if loader is not None:
        out, err = loader.communicate()
        if loader.returncode != 0:
            sys.exit(f"load process failed ({loader.returncode}):\n{err.strip()[-1500:]}")
        r["load"] = json.loads(out.strip().splitlines()[-1])
    r["unmatched_deliveries"] = standin.unmatched
    http.close()
    return r


def diagnose(http, base: str, token: str, calls: list[CallFile], ids: list, finished: dict) -> list[str]:
    """Why each unfinished call is not done, from GET /api/calls/<id> (an admin token)."""
    out = []
    for i, call in enumerate(calls):
        if i in finished:
            continue
        try:
            c = http.get(f"{base}/api/calls/{ids[i]}", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
            jobs = ", ".join(f"job {j['status']} ({j['attempts']} tries"
                             f"{': ' + j['last_error'] if j['last_error'] else ''})" for j in c.get("jobs", []))
            dels = ", ".join(f"{d['sink']} {d['status']}{': ' + d['last_error'] if d.get('last_error') else ''}"
                             for a in c.get("alerts", []) for d in a.get("deliveries", []))
            out.append(f"call {i} ({call.seconds:g}s {call.fmt}): {c.get('status')}"
                       f"{': ' + c['error'] if c.get('error') else ''}; {jobs or 'no job'}; "
                       f"deliveries: {dels or 'none'}")
        except Exception as exc:  # the receiver itself may be the problem
            out.append(f"call {i}: GET /api/calls/{ids[i]} failed: {exc.__class__.__name__}: {exc}")
    return out


# --------------------------------------------------------------------------- load process

def load_child(spec: dict) -> None:
    """Open-loop load: request i is due at start + i / rate, whatever happened to the others;
    its latency counts from then. Prints one JSON line."""
    host, port = spec["base"].split("//")[1].split(":")
    total = int(spec["rate"] * spec["seconds"])
    due: queue.Queue = queue.Queue()
    lock = threading.Lock()
    latencies: list[float] = []
    kinds: dict[str, int] = {}
    sent = [0]
    start = time.monotonic() + 0.2
    cutoff = start + spec["seconds"] + spec["drain"]  # nothing is sent after this

    def count(kind: str) -> None:
        kinds[kind] = kinds.get(kind, 0) + 1

    def send() -> None:
        conn = None
        while True:
            item = due.get()
            if item is None:
                return
            i, at = item
            if time.monotonic() > cutoff:
                with lock:
                    count("unsent (client backlog at the end)")
                continue
            body = json.dumps({"call_id": f"{spec['prefix']}-{i}", "recording_url": f"{spec['recording']}/{i}.wav",
                               "customer_id": f"load{i}"}).encode()
            headers = {"Content-Type": "application/json", "X-CallMood-Signature": signature(body)}
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                with lock:
                    sent[0] += 1
                conn.request("POST", "/webhooks/generic", body, headers)
                resp = conn.getresponse()
                resp.read()
                kind = "2xx" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as exc:  # timeouts, resets, refused: each by its kind
                kind = "timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
                if conn is not None:
                    conn.close()
                conn = None
            done = time.monotonic()
            with lock:
                count(kind)
                latencies.append(done - at)

    threads = [threading.Thread(target=send, daemon=True) for _ in range(spec["connections"])]
    for t in threads:
        t.start()
    for i in range(total):
        at = start + i / spec["rate"]
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        due.put((i, at))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join(timeout=max(0.0, cutoff - time.monotonic()) + 12)  # a request in flight may take its 10 s
    end = time.monotonic()
    with lock:
        lat = sorted(latencies)
        answered = len(lat)
        ok = kinds.get("2xx", 0)
        lost = total - sum(kinds.values())  # still in flight when the client gave up on them
    if lost:
        kinds["no answer by the end"] = lost
    # Scheduled requests that got no answer count as slower than any answer.
    pad = [float("inf")] * (total - answered)
    everything = lat + pad
    print(json.dumps({
        "scheduled": total, "sent": sent[0], "answered": answered, "accepted": ok,
        "errors": {k: v for k, v in sorted(kinds.items()) if k != "2xx"},
        "achieved_rate": answered / max(1e-9, end - start),
        "p50_ms": pct(everything, 50) * 1000, "p99_ms": pct(everything, 99) * 1000,
        "max_ms": (everything[-1] if everything else 0.0) * 1000,
        "p99_answered_ms": pct(lat, 99) * 1000}), flush=True)


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (inf where it falls on an unanswered request)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


# --------------------------------------------------------------------------- stock

def run_stock(calls: list[CallFile], model_dir: Path, device: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="callmood-stock-") as tmp:
        spec = {"calls": [c.path for c in calls], "model": str(model_dir), "device": device, "work": tmp,
                "out": str(Path(tmp) / "stock.json")}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--stock-child", json.dumps(spec)],
                              cwd=ROOT, capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            sys.exit("stock failed:\n" + "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:]))
        return json.loads(Path(spec["out"]).read_text())


def stock_child(spec: dict) -> None:
    """The tutorial's way in one process: decode, 3 s pieces per channel, generate, no VAD."""
    import logging
    import resource
    import warnings

    # FunASR prints notices to stdout and logs at INFO; none of it is ours (captured, shown on failure).
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(sys.stderr):
        import torch
        from funasr import AutoModel

        from plugin.audio.decode import decode

        t0 = time.perf_counter()
        # FunASR's defaults otherwise (notably ncpu=4 torch threads): that is the stock behaviour.
        model = AutoModel(model=spec["model"], device=spec["device"], disable_update=True, disable_pbar=True,
                          log_level="ERROR")
        load_s = time.perf_counter() - t0
        kw = dict(granularity="utterance", extract_embedding=False)
        import numpy as np

        model.generate(input=[np.zeros(WINDOW_S * 16000, dtype=np.float32)], **kw)  # warm-up, not timed
        seconds = audio_s = 0.0
        pieces = 0
        for i, src in enumerate(spec["calls"]):
            t0 = time.perf_counter()
            audio = decode(src, Path(spec["work"]) / f"call{i}.wav")
            win = WINDOW_S * audio.sample_rate
            for ch in range(audio.channels):
                # Every 3 s piece; a last piece under 1 s is dropped (the tutorial's pydub loop
                # steps over whole seconds, so its last piece is at least 1 s long).
                cuts = [(s, min(s + win, audio.frames)) for s in range(0, audio.frames, win)
                        if min(s + win, audio.frames) - s >= audio.sample_rate]
                res = model.generate(input=[audio.channel(ch, a, b) for a, b in cuts], **kw)
                if len(res) != len(cuts):
                    raise SystemExit(f"stock: {len(res)} results for {len(cuts)} pieces of {src}")
                pieces += len(cuts)
            if spec["device"] == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t0
            audio_s += audio.duration
            (Path(spec["work"]) / f"call{i}.wav").unlink()
    Path(spec["out"]).write_text(json.dumps({
        "calls": len(spec["calls"]), "seconds": seconds, "audio_s": audio_s, "pieces": pieces, "load_s": load_s,
        "threads": torch.get_num_threads(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# --------------------------------------------------------------------------- report

def med(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def cell(values: list[float], fmt: str = "{:.1f}") -> str:
    """One value, or the median [min-max] of the rounds."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    m, lo, hi = med(values)
    if len(values) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} [{fmt.format(lo)}–{fmt.format(hi)}]"


def ms(v: float) -> str:
    if v != v:  # NaN: nothing was answered at all
        return "—"
    return "no answer" if v == float("inf") else f"{v:.0f}"


def report(args, env: dict, calls: list[CallFile], dbs, results: list[dict], stocks: list[dict]) -> str:
    audio_h = sum(c.seconds for c in calls) / 3600
    lines = [f"## Whole-call throughput: {len(calls)} calls ({audio_h * 60:.1f} min of audio), "
             f"{args.geometry} geometry, {env['device_name']}" + ("" if env["device"] == "cuda"
                                                                 else f", {env['cpus']} CPUs"), ""]
    stock_rate = {s_i: s["audio_s"] / s["seconds"] for s_i, s in enumerate(stocks)}  # audio-s per s
    best = None
    for db, _ in dbs:
        rows = []
        for k in args.workers:
            runs = [r for r in results if r["db"] == db and r["workers"] == k]
            if not runs:
                continue
            done = [r for r in runs if r["calls_done"] == len(calls)]
            cph = [3600 * len(calls) / r["wall_s"] for r in done]
            ahh = [r["audio_s"] / r["wall_s"] for r in done]
            ratio = [r["audio_s"] / r["wall_s"] / stock_rate[r["round"]] for r in done if r["round"] in stock_rate]
            p50 = [pct(sorted(r["latencies_s"]), 50) for r in runs if r["latencies_s"]]
            p95 = [pct(sorted(r["latencies_s"]), 95) for r in runs if r["latencies_s"]]
            loads = [r["load"] for r in runs if "load" in r]
            rows.append([str(k), str(runs[0]["threads"]),
                         cell(cph) if len(done) == len(runs) else f"{len(runs) - len(done)} run(s) unfinished",
                         cell(ahh, "{:.2f}"), cell(ratio, "{:.2f}"), cell(p50), cell(p95),
                         cell([r["receiver_rss_mb"] for r in runs], "{:.0f}"),
                         cell([max(r["worker_rss_mb"]) for r in runs], "{:.0f}"),
                         cell([100 * ld["accepted"] / ld["scheduled"] for ld in loads], "{:.1f}"),
                         cell([ld["p99_ms"] for ld in loads], "{:.0f}") if all(
                             ld["p99_ms"] != float("inf") for ld in loads) else "no answer"])
            if len(done) == len(runs) and (best is None or statistics.median(ahh) > best[0]):
                best = (statistics.median(ahh), db, k)
        header = ["workers", "threads each", "calls/h", "audio h/h", "x stock", "p50 s", "p95 s",
                  "receiver RSS MB", "worker RSS max MB", "load accepted %", "load p99 ms"]
        lines += [f"### {db}", "", *table_text(header, rows), ""]

    if args.load_seconds > 0:
        rows = []
        for r in results:
            ld = r.get("load")
            if ld is None:
                continue
            errors = ", ".join(f"{k}: {v}" for k, v in ld["errors"].items()) or "none"
            rows.append([r["db"], str(r["workers"]), str(r["round"] + 1), str(ld["scheduled"]), str(ld["sent"]),
                         f"{ld['achieved_rate']:.0f}", f"{100 * ld['accepted'] / ld['scheduled']:.1f}", errors,
                         ms(ld["p50_ms"]), ms(ld["p99_ms"]), ms(ld["max_ms"]), ms(ld["p99_answered_ms"])])
        lines += [f"### Webhook load: {args.load_rate:g} events/s for {args.load_seconds:g} s, open loop, "
                  f"{args.load_connections} connections", "",
                  *table_text(["db", "workers", "round", "scheduled", "sent", "answered/s", "accepted %", "errors",
                               "p50 ms", "p99 ms", "max ms", "p99 of answered ms"], rows), ""]

    shares = [s for c in calls for s in c.speech]
    fmts = {f: sum(c.fmt == f for c in calls) for f in ("wav_mulaw", "mp3")}
    lines += [
        f"- calls: {len(calls)}, {min(c.seconds for c in calls) / 60:.1f}–{max(c.seconds for c in calls) / 60:.1f} "
        f"min each ({audio_h:.2f} h in all; seed {args.seed}), 8 kHz stereo: {fmts['wav_mulaw']} mu-law WAV, "
        f"{fmts['mp3']} MP3 32 kbit/s; agent on channel 0, customer on 1; speech share per channel "
        f"{100 * min(shares):.0f}–{100 * max(shares):.0f}% (synthesized utterance time / call length)",
        f"- processes: `callmood serve --no-worker` (model.threads 1) + K x `callmood worker` "
        f"(model.threads = max(1, {env['cpus']} CPUs // K); K > {env['cpus']} oversubscribes the CPUs), "
        f"worker.concurrency {args.concurrency}, server.threads 8 (the default); model on {env['device']}; "
        "the receiver loads the model too (/predict, /health): its RSS includes it",
        "- calls/h and audio h/h: N calls / the time from the first webhook to the last delivery of the last call "
        "(model load excluded: the timer starts once /health is 200 and every worker logged its model loaded); "
        "p50/p95: per call, its webhook to its last delivery (CRM tag and WeCom alert)",
        "- RSS: VmHWM of each process before it is stopped; ffmpeg (a child per decode, short-lived) sampled "
        "every 0.25 s, highest seen " + (f"{max(r['ffmpeg_peak_mb'] for r in results):.0f}" if results else "—")
        + " MB",
    ]
    if stocks:
        s = stocks[0]
        lines.append(
            f"- stock: funasr AutoModel.generate on 3 s pieces of each channel (batch 1, {s['threads']} torch threads, "
            f"no VAD), decode included, model load excluded, in one process; {s['calls']} of the {len(calls)} calls "
            f"({s['audio_s'] / 60:.1f} min, {s['pieces']} pieces): "
            + cell([st["audio_s"] / st["seconds"] for st in stocks], "{:.2f}")
            + " audio h/h, i.e. " + cell([3600 * st["calls"] / st["seconds"] for st in stocks])
            + " calls/h on that subset"
            + ("" if s["calls"] == len(calls) else ", scaled to the whole mix by audio time "
               + cell([st["audio_s"] / st["seconds"] * len(calls) / audio_h for st in stocks]) + " calls/h")
            + f"; peak RSS {stocks[0]['peak_rss_mb']:.0f} MB; "
            "x stock = our audio h/h / stock's, same round")
    else:
        lines.append("- stock: not run (--stock-calls -1): no ratio")
    if args.load_seconds > 0:
        lines.append("- load: started right after the N webhooks, from its own process; latency from each request's "
                     "scheduled time; its recordings are answered 404 (refused at once, no retry), so its calls cost "
                     "the workers a GET and a failed job each; answered/s = answers / (end of the phase - start); "
                     f"a request still unsent {args.load_drain:g} s after the schedule counts as unsent; p50/p99/max "
                     "are over every scheduled request, an unanswered one slower than any answer ('no answer' where "
                     "the percentile falls on one); the last column is over the answered ones only")
    unmatched = sum(r.get("unmatched_deliveries", 0) for r in results)
    if unmatched:
        lines.append(f"- {unmatched} delivery(ies) arrived that named no known customer")
    for r in results:
        for why in r.get("unfinished", []):
            lines.append(f"- unfinished ({r['db']}, {r['workers']} workers, round {r['round'] + 1}): {why}")
    if best is not None:
        where = (f"one GPU ({env['device_name']})" if env["device"] == "cuda"
                 else f"one {env['cpus']}-core box ({env['cpu']})")
        lines.append(f"- capacity: {where}: about {best[0] * 12:.0f} calls of 5 minutes per hour "
                     f"(best: {best[1]}, {best[2]} worker(s); audio h/h x 12, so it assumes the rate holds "
                     f"for 5-minute calls as for this mix)")
    lines.append(f"- rounds: {args.rounds}" + (" (stock, then each service run, per round; median [range])"
                                                if args.rounds > 1 else ""))
    lines.append(f"- command: `{command_line()}`; torch {env['torch']}, funasr {env['funasr']}, "
                 f"Python {env['python']}")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, env: dict, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [f"## Whole-call throughput benchmark, {now}", "",
            f"- command: `{command_line()}`",
            f"- machine: {env['cpu']}, {env['cpus']} CPUs; device: {env['device_name']}",
            f"- torch {env['torch']}, funasr {env['funasr']}, Python {env['python']}", ""]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(head) + "\n" + text.replace("## ", "### ", 1).replace("\n### ", "\n#### ") + "\n")


if __name__ == "__main__":
    main()
