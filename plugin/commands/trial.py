"""The other end of the offline trial (README, "Two commands"): a recording to analyse, a
CRM and a WeCom group robot, on 127.0.0.1, printing what arrives. Standard library only.

    .venv/bin/callmood trial-receiver                   # port 8000
    .venv/bin/callmood trial-receiver --port 8001 my-call.wav

- GET /c-1001.wav: a 12 s warbling tone (16 kHz mono WAV, made here), or any file named
  on the command line at /<its name>. Tones are not speech to silero-vad: the trial config
  sets ``audio: {vad: energy}`` so the tone is analysed; real recordings work either way.
- POST /api/customers/<id>/tags: what the ``rest`` sink sends (sinks.crm): printed, 200.
- POST /cgi-bin/webhook/send: what the ``wecom_robot`` sink sends (sinks.wecom): its
  markdown printed, answered as the robot does, ``{"errcode": 0, "errmsg": "ok"}``.

Trial only: it listens on 127.0.0.1 and checks nothing.
"""

from __future__ import annotations

import io
import json
import math
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

TONE = "c-1001.wav"  # the recording README's "Sending a call" names


def tone_wav(seconds: float = 12.0, rate: int = 16000) -> bytes:
    """A loud warbling tone: what the energy VAD takes for speech, so windows get classified."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        v = 0.4 * math.sin(2 * math.pi * 220 * t * (1 + 0.05 * math.sin(2 * math.pi * 3 * t)))
        frames += int(v * 32767).to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return out.getvalue()


def handler(files: dict[str, bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # only what arrives is printed
            pass

        def do_GET(self):
            data = files.get(self.path.lstrip("/").split("?")[0])
            if data is None:
                return self._answer(404, {"error": "not found"})
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            print(f"recording  GET {self.path} ({len(data)} bytes)", flush=True)

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            if self.path.startswith("/cgi-bin/webhook/send"):
                content = body.get("markdown", {}).get("content") if isinstance(body, dict) else body
                print(f"\n=== WeCom alert ===\n{content}\n", flush=True)
                return self._answer(200, {"errcode": 0, "errmsg": "ok"})
            print(f"\n=== CRM {self.command} {self.path} ===\n"
                  f"{json.dumps(body, ensure_ascii=False, indent=2)}\n", flush=True)
            return self._answer(200, {"ok": True})

        do_PUT = do_PATCH = do_POST

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@click.command("trial-receiver")
@click.option("--port", type=int, default=8000, show_default=True)
@click.argument("recordings", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def trial_receiver(port, recordings):
    """The other end of the offline trial: serves a recording (and RECORDINGS), plays the
    CRM and the WeCom robot on 127.0.0.1, and prints every tag and alert that arrives."""
    files = {TONE: tone_wav(), **{p.name: p.read_bytes() for p in recordings}}
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(files))
    base = f"http://127.0.0.1:{port}"
    click.echo(f"trial receiver on {base}: recordings " + ", ".join(f"{base}/{n}" for n in files)
               + f"; CRM {base}/api/customers/<id>/tags; WeCom {base}/cgi-bin/webhook/send")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
