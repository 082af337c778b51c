"""Test helpers: real audio made with ffmpeg, real HTTP servers standing in for
the helpdesk's recording store, the CRM and WeCom."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from plugin.audio.decode import ffmpeg_exe
from plugin.core.data import Alert

# (extension, ffmpeg codec arguments) for the formats call centers produce.
FORMATS = {
    "wav_pcm": ("wav", ["-c:a", "pcm_s16le"]),
    "wav_mulaw": ("wav", ["-c:a", "pcm_mulaw"]),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "32k"]),
    "ogg_opus": ("ogg", ["-c:a", "libopus", "-b:a", "24k"]),
    "m4a_aac": ("m4a", ["-c:a", "aac", "-b:a", "48k"]),
    "amr": ("amr", ["-c:a", "libopencore_amrnb", "-b:a", "12.2k"]),
}


def make_audio(path: Path, fmt: str = "wav_pcm", rate: int = 16000, channels: int = 1,
               seconds: float = 7.0) -> Path:
    """Write a recording: a warbling tone plus noise per channel, different on each channel."""
    ext, codec = FORMATS[fmt]
    path = Path(path).with_suffix("." + ext)
    inputs, labels = [], []
    for ch in range(channels):
        freq = 220 + 110 * ch
        expr = f"0.4*sin(2*PI*{freq}*t*(1+0.05*sin(2*PI*3*t)))+0.05*(random({ch})-0.5)"
        inputs += ["-f", "lavfi", "-i", f"aevalsrc='{expr}':s={rate}:d={seconds}"]
        labels.append(f"[{ch}:a]")
    cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *inputs]
    if channels > 1:
        cmd += ["-filter_complex", f"{''.join(labels)}join=inputs={channels}:channel_layout=stereo[a]",
                "-map", "[a]"]
    cmd += ["-ar", str(rate), "-ac", str(channels), *codec, str(path)]
    subprocess.run(cmd, check=True)
    return path


def make_silence(path: Path, seconds: float = 4.0) -> Path:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=16000:cl=mono", "-t", str(seconds), "-c:a", "pcm_s16le", str(path)],
                   check=True)
    return path


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeServer:
    """A real HTTP server on 127.0.0.1 with scripted answers per path; records every request."""

    def __init__(self, tls_context=None):
        self.requests: list[Recorded] = []
        self.routes: dict[str, Callable[[Recorded], Reply] | list[Reply] | Reply] = {}
        self.default: Reply = Reply(404, b"not found")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, self.path, dict(self.headers.items()), body)
                outer.requests.append(rec)
                reply = outer._reply(rec)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.body
                if isinstance(data, dict):
                    data = json.dumps(data, ensure_ascii=False).encode()
                elif isinstance(data, str):
                    data = data.encode()
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in reply.headers and "Transfer-Encoding" not in reply.headers:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if reply.headers.get("Transfer-Encoding") == "chunked":
                    for i in range(0, len(data), 65536):
                        part = data[i:i + 65536]
                        self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
            self.url = f"https://localhost:{self.port}"
        # A short poll interval: close() waits for the loop to notice, once per test.
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _reply(self, rec: Recorded) -> Reply:
        route = self.routes.get(rec.path.split("?")[0], self.default)
        if callable(route):
            return route(rec)
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route

    def serve_file(self, path: str, file: Path) -> str:
        self.routes[path] = Reply(200, Path(file).read_bytes(), {"Content-Type": "audio/*"})
        return self.url + path

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wecom_robot(rec: Recorded) -> Reply:
    """Answer like the WeCom group robot, checking the documented markdown body."""
    try:
        body = rec.json()
    except ValueError:
        return Reply(200, {"errcode": 40001, "errmsg": "invalid json"})
    content = body.get("markdown", {}).get("content") if isinstance(body, dict) else None
    if body.get("msgtype") != "markdown" or not isinstance(content, str) or not content:
        return Reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
    if len(content.encode("utf-8")) > 4096:
        return Reply(200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"})
    return Reply(200, {"errcode": 0, "errmsg": "ok"})


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def at_once(n: int, fn: Callable[[int], object]) -> tuple[list, list[Exception]]:
    """``fn(0)`` .. ``fn(n - 1)``, each in a thread of its own, released together (a race on
    purpose): what they returned, in no particular order, and what they raised."""
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run(i):
        try:
            barrier.wait()
            results.append(fn(i))
        except Exception as exc:  # noqa: BLE001 - the caller asserts on them
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- routing: a routing.yaml and alerts as the rules engine makes them ------------------

ROUTING = """\
defaults:
  group_by: [customer_id]
  group_wait: 0s
  cooldown: 4h
receivers:
  supervisors:    {sink: wecom, mentions: [supervisor01]}
  finance_leads:  {sink: wecom, mentions: [lead01, lead02]}
  quality_review: {sink: wecom, mentions: []}
routes:
  - match: {scenario: [finance_complaint], severity: [critical]}
    receiver: finance_leads
    cooldown: 1h
  - match: {role: [agent]}
    receiver: quality_review
  - receiver: supervisors
"""


def make_alert(rule="angry_customer", severity="warning", scenario="general", role="customer",
               labels=None, summary=None) -> Alert:
    return Alert(rule=rule, scenario=scenario, severity=severity, role=role, emotions=["angry"], share=0.5,
                 confidence=0.9, matched=[(0.0, 3.0), (63.0, 66.0)],
                 summary=summary or f"{rule} ({severity})", labels=labels or {}, details={"share": 0.5})


# --- the `callmood` command, in this process ---------------------------------------------

@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
    """Run ``callmood ARGS`` in this process (click's test runner): the same command, exit
    code, stdout and stderr as a shell gets, log lines included, without paying a Python
    start-up and FunASR's import each time. tests/e2e runs the real processes."""
    import logging

    from click.testing import CliRunner

    from plugin.cli import main

    # The command sets up logging to stderr as it would in a fresh process (basicConfig
    # does nothing while pytest's handlers are on the root logger), then it is put back.
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("plugin", "connectors", "rules")}
    root.handlers = []
    umask = os.umask(0o022)  # `callmood` makes it 077 for the rest of its process: not of pytest's
    os.umask(umask)
    try:
        result = CliRunner(env=env).invoke(main, [str(a) for a in args], input=input)
    finally:
        os.umask(umask)
        root.handlers, root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


# --- a sender that trickles, for wall-clock deadlines ------------------------------------

class Trickler:
    """A raw HTTP server on 127.0.0.1 that sends what a route scripts, one byte every
    ``every`` seconds once it reaches the trickled part: each read succeeds long before
    fetch.timeout_s, so only a wall-clock deadline stops it."""

    def __init__(self, every: float = 0.2, tls_context=None, handshake: bool = True):
        self.every = every
        self.tls_context = tls_context
        self.handshake = handshake  # False: accept the connection, never answer the TLS hello
        self.routes: dict[str, tuple[bytes, bytes]] = {}  # path -> (sent at once, then trickled)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                if self.tls_context is not None:
                    if not self.handshake:
                        self.closed.wait(30)
                        return
                    conn = self.tls_context.wrap_socket(conn, server_side=True)
                path = conn.recv(65536).split(b" ")[1].decode()
                head, slow = self.routes.get(path, (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", b""))
                conn.sendall(head)
                for i in range(len(slow)):
                    if self.closed.wait(self.every):
                        return
                    conn.sendall(slow[i:i + 1])
            except OSError:  # the client hung up: what the deadline does
                pass

    def close(self):
        self.closed.set()
        self.sock.close()


# --- a call judged by the rules in force, as the pipeline's last step stores it -------------

_judged = itertools.count(1)


def angry_analysis(seconds: int = 30):
    """A customer angry in every window (known results: a random model's labels are arbitrary)."""
    from plugin.core.data import SegmentResult, summarize

    segs = [SegmentResult(start=float(i), end=float(i + 3), channel=1, role="customer", label="angry",
                          confidence=0.93, scores={"angry": 0.93}) for i in range(0, seconds, 3)]
    return summarize(segs, float(seconds))


def analyse(svc, customer: str = "cust-42", queue: str = "support", analysis=None, ticket: str = "T-1") -> int:
    """A call stored and judged by ``svc``'s rules, its alerts, deliveries and notifications
    planned as plugin/flow/results.py does; the call's id."""
    from plugin.flow.context import call_context
    from plugin.flow.results import Judgement, store_results
    from plugin.store.tables import Call
    from rules.engine import evaluate

    analysis = analysis or angry_analysis()
    with svc.sessions.begin() as s:
        now = svc.clock.now(s)
        call = Call(source="generic", external_id=f"judged-{next(_judged)}", recording_url="http://pbx/r.wav",
                    customer_id=customer, agent_id="agent-7", queue=queue, ticket_id=ticket, event={},
                    status="analyzing", received_at=now)
        s.add(call)
        s.flush()
        ctx = call_context(call)
        scenario, alerts = evaluate(svc.rules, analysis, ctx)
        store_results(s, call, ctx, analysis, {}, Judgement(scenario, alerts, svc.rules), svc.outputs, now)
        return call.id
