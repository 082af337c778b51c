"""Peak memory of a long stereo call through decode and analysis.

    .venv/bin/python bench/long_call.py [--minutes 60] [--geometry tiny] [--format mp3|wav_mulaw]
                                        [--markdown PATH]

Makes a stereo recording in a call-center format (8 kHz, agent on channel 0 and the
customer on channel 1, speaking in turns with pauses; real synthesized speech from
tests.speech, a few minutes of it looped with ffmpeg to the requested length), then,
in a child process of its own, measures what the service does with such a call:

  model load      RSS once the emotion2vec model (random weights) is loaded
  decode          plugin.audio.decode.decode to a 16 kHz WAV: time, our peak RSS, ffmpeg's
  analyze         plugin.flow.analysis.analyze_audio with the default AudioConfig (silero VAD),
                  roles {0: agent, 1: customer}: time (VAD and classification apart),
                  peak RSS, notes, segment count

Why: a one-hour call must be processed within a bounded, stated peak RSS. The decoded
WAV is memory-mapped and read a piece at a time, so the peak should sit far below the
size of the decoded call (printed beside it). The tiny geometry keeps an hour to minutes
on 2 cores; the audio path's memory does not depend on the model's geometry (the model
adds its own, constant, share: see the RSS after loading).

Peak RSS per stage: the kernel's high-water mark (VmHWM) is reset at the start of each
stage through /proc/self/clear_refs; a thread also samples VmRSS every 20 ms (the fallback
where the reset is refused) and the RSS of our child processes (ffmpeg). ru_maxrss is no
help here: it is the process's lifetime peak, and the reset clears it too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path(tempfile.gettempdir()) / "callmood-bench"  # recordings and model dirs, reused across runs
BASE_S = 180  # seconds of conversation synthesized; longer calls loop it
RATE = 8000   # telephone audio

AGENT = [
    "Good morning, customer service, this is Anna speaking. How can I help you?",
    "I am sorry to hear that. Could you give me your order number, please?",
    "Thank you. Let me check that for you, one moment please.",
    "I can see the return arrived at our warehouse on the twelfth.",
    "I understand. I will escalate this to our finance team right now.",
    "You will receive a confirmation by email within the hour.",
]
CUSTOMER = [
    "Hello. I have been waiting for my refund for three weeks now.",
    "It is four five seven two one. I already gave it to your colleague twice!",
    "Fine, but please hurry, I have been on hold for twenty minutes.",
    "Then why is my money still not back? This is really unacceptable.",
    "That is what the last person told me too. I want this solved today.",
    "All right. Thank you, I will wait for the email.",
]


# --------------------------------------------------------------------------- parent

def main() -> None:
    args = parse_args()
    if args.child:
        return child_main(json.loads(args.child))

    model_dir = model_directory(args.geometry)
    src = call_recording(args.minutes, args.format)
    with tempfile.TemporaryDirectory(prefix="callmood-longcall-") as tmp:
        out = Path(tmp) / "result.json"
        spec = {"src": str(src), "model": str(model_dir), "work": tmp, "out": str(out)}
        progress(f"measuring {src.name} ({src.stat().st_size / 2**20:.1f} MB) in a child process ...")
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                              cwd=ROOT, capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            sys.exit("measurement failed:\n" + "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:]))
        result = json.loads(out.read_text())
    text = report(args, src, result)
    print(text, flush=True)
    if args.markdown:
        write_markdown(Path(args.markdown), text)
        progress(f"appended to {args.markdown}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the stereo call")
    ap.add_argument("--geometry", default="tiny", choices=["tiny", "base", "large"])
    ap.add_argument("--format", default="mp3", choices=["mp3", "wav_mulaw"],
                    help="8 kHz stereo MP3 (32 kbit/s) or 8 kHz stereo mu-law WAV")
    ap.add_argument("--markdown", default="", help="append the results to this Markdown file")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)  # internal: the measuring process
    return ap.parse_args()


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def model_directory(geometry: str) -> Path:
    """A random-weight model dir (FunASR's own class), cached; built here, not in the measured child."""
    path = CACHE / f"model-{geometry}"
    if not (path / "model.pt").exists():
        progress(f"building a random-weight {geometry} model in {path} ...")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from plugin.model.modeldir import build_random_model_dir

            tmp = path.with_name(path.name + ".part")
            build_random_model_dir(tmp, geometry)
            tmp.rename(path)
    return path


def call_recording(minutes: float, fmt: str) -> Path:
    """An 8 kHz stereo call of `minutes`, cached: BASE_S of synthesized turns, looped."""
    from plugin.audio.decode import ffmpeg_exe
    from tests.helpers import FORMATS
    from tests.speech import write_conversation

    seconds = round(minutes * 60, 3)
    ext, codec = FORMATS[fmt]
    path = CACHE / f"call-{seconds:g}s-{fmt}-8k-stereo.{ext}"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    base = CACHE / f"call-base-{BASE_S}s-8k-stereo.wav"
    if not base.exists():
        progress(f"synthesizing {BASE_S} s of a stereo conversation ...")
        part = write_conversation(CACHE / "call-base.part", conversation_turns(BASE_S), BASE_S,
                                  channels=2, rate=RATE, fmt="wav_pcm")
        part.rename(base)
    progress(f"looping it to {seconds:g} s of {fmt} ...")
    tmp = path.with_name("part-" + path.name)
    # -stream_loop repeats the input; -t cuts the output to length; the codec is the test formats'.
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(base),
                    "-t", str(seconds), "-ar", str(RATE), "-ac", "2", *codec, str(tmp)], check=True)
    tmp.rename(path)
    return path


def conversation_turns(seconds: float) -> list[tuple[int, float, str]]:
    """Agent (channel 0) and customer (channel 1) in turns, with pauses and a hold now and then."""
    from tests.speech import speak

    turns, t, i = [], 1.0, 0
    while True:
        channel = i % 2
        text = (AGENT if channel == 0 else CUSTOMER)[(i // 2) % len(AGENT)]
        samples, sr = speak(text)
        length = len(samples) / sr
        if t + length > seconds - 0.5:
            return turns
        turns.append((channel, t, text))
        # Pauses between turns of 0.4-1.6 s; every 7th turn the agent puts the caller on hold.
        t += length + 0.4 + 0.3 * (i % 5) + (12.0 if i % 7 == 6 else 0.0)
        i += 1


def report(args: argparse.Namespace, src: Path, r: dict) -> str:
    mb = lambda x: f"{x:.0f}"  # noqa: E731
    notes = r["notes"]
    rows = [
        ["imports (numpy, plugin)", "—", "—", mb(r["rss_start_mb"])],
        [f"model load ({args.geometry}, {r['params'] / 1e6:.1f} M params)", f"{r['load_s']:.1f}",
         mb(r["load"]["peak_mb"]), mb(r["rss_model_mb"])],
        ["decode to 16 kHz WAV (ffmpeg)", f"{r['decode_s']:.1f}", mb(r["decode"]["peak_mb"]),
         mb(r["decode"]["end_mb"])],
        ["analyze: silero VAD + windows", f"{r['vad_s']:.1f}", mb(r["vad"]["peak_mb"]), mb(r["vad"]["end_mb"])],
        ["analyze: classify", f"{r['classify_s']:.1f}", mb(r["classify"]["peak_mb"]), mb(r["classify"]["end_mb"])],
        ["analyze total", f"{r['analyze_s']:.1f}", mb(r["analyze"]["peak_mb"]), mb(r["analyze"]["end_mb"])],
        ["whole run (highest of the above)", f"{r['total_s']:.1f}", mb(r["whole_peak_mb"]), "—"],
    ]
    header = ["stage", "seconds", "peak RSS MB", "RSS after MB"]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    over_model = r["analyze"]["peak_mb"] - r["rss_model_mb"]
    roles = ", ".join(f"{k}: {v}" for k, v in r["per_role"].items())
    lines = [
        f"## Long call: {args.minutes:g} min stereo {args.format} at 8 kHz, {r['cpus']} CPU cores",
        "",
        fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(fmt(row) for row in rows),
        "",
        f"- recording: {src.name}, {src.stat().st_size / 2**20:.1f} MB; decoded: {r['duration_s']:.0f} s, "
        f"{r['channels']} channels, 16 kHz 16-bit WAV of {r['wav_mb']:.0f} MB (memory-mapped, not loaded)",
        f"- peak RSS during analysis {r['analyze']['peak_mb']:.0f} MB = {over_model:.0f} MB above the loaded "
        f"model, against {r['wav_mb']:.0f} MB of decoded audio; of that peak, {r['analyze']['peak_file_mb']:.0f} MB "
        f"at most were file-backed pages (the mapped WAV, libraries)",
        f"- decode: ffmpeg runs as a child process, its own peak RSS {r['ffmpeg_peak_mb']:.0f} MB "
        f"(sampled); ours stayed at {r['decode']['peak_mb']:.0f} MB",
        f"- after analysis RSS is {r['analyze']['end_mb']:.0f} MB, {r['analyze']['end_anon_mb']:.0f} MB of it "
        f"anonymous (allocator caches and arenas keep freed memory; nothing of the call is held)",
        f"- analysis: {r['segments']} segments ({roles}); notes: speech_s {notes.get('speech_s')}, "
        f"classified_s {notes['classified_s']}, skipped_s {notes['skipped_s']} "
        f"(of audio_s {notes['audio_s']} over both tracks)",
        f"- {r['duration_s'] / r['total_pipeline_s']:.0f}x real time for decode + analysis "
        f"({r['total_pipeline_s']:.1f} s); model: {r['describe']}",
        f"- peak per stage: {r['peak_method']}",
    ]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, text: str) -> None:
    import platform
    from importlib.metadata import version

    path.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable)
    exe_s = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    argv = [os.path.relpath(Path(sys.argv[0]).resolve(), ROOT), *sys.argv[1:]]
    models = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
              if ln.startswith("model name")]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [f"## Long-call memory benchmark, {now}", "",
            f"- command: `{shlex.join([exe_s, *argv])}`",
            f"- device: {models[0] if models else platform.processor()}, {len(os.sched_getaffinity(0))} cores (CPU)",
            f"- torch {version('torch')}, funasr {version('funasr')}, Python {platform.python_version()}",
            "- dtype: fp32 (the batched engine's default on CPU)", ""]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(head) + "\n" + text.replace("## ", "### ", 1) + "\n")


# --------------------------------------------------------------------------- child

class PeakRss:
    """Peak RSS over a stage: the kernel's VmHWM, reset at the start, and a 20 ms sampler.

    ru_maxrss is the process's lifetime peak, so it cannot tell the stages apart. The
    sampler also follows our child processes (ffmpeg), whose memory is not in our RSS.
    mark() closes a part of the stage and starts the next (VAD, then classification).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.hwm_reset = False
        self.parts: list[dict] = []

    def __enter__(self):
        self._reset()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.mark(last=True)

    def _reset(self):
        with self._lock:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
                self.hwm_reset = True
            except OSError:
                pass
            status = read_status()
            self.peak_kb, self.peak_file_kb, self.child_peak_kb = status["VmRSS"], status.get("RssFile", 0), 0

    def mark(self, last: bool = False) -> dict:
        """The peak since the last mark (or the start), and a fresh start for the next part."""
        status = read_status()
        with self._lock:
            peak = max(self.peak_kb, status["VmHWM"] if self.hwm_reset else 0)
            part = {"peak_mb": peak / 1024, "end_mb": status["VmRSS"] / 1024,
                    "end_anon_mb": status.get("RssAnon", 0) / 1024, "peak_file_mb": self.peak_file_kb / 1024,
                    "child_peak_mb": self.child_peak_kb / 1024}
        self.parts.append(part)
        if not last:
            self._reset()
        return part

    def summary(self) -> dict:
        """Over all parts: the highest peak, and the RSS at the end."""
        return {**self.parts[-1], "peak_mb": max(p["peak_mb"] for p in self.parts),
                "peak_file_mb": max(p["peak_file_mb"] for p in self.parts),
                "child_peak_mb": max(p["child_peak_mb"] for p in self.parts)}

    def _sample(self):
        while True:
            status = read_status()
            children = child_rss_kb()
            with self._lock:
                self.peak_kb = max(self.peak_kb, status["VmRSS"])
                self.peak_file_kb = max(self.peak_file_kb, status.get("RssFile", 0))
                self.child_peak_kb = max(self.child_peak_kb, children)
            if self._stop.wait(0.02):
                return


def child_rss_kb() -> int:
    """Total VmRSS of this process's children (ffmpeg while decoding)."""
    total = 0
    for tasks in Path("/proc/self/task").glob("*/children"):
        for pid in tasks.read_text().split():
            try:
                total += read_status(f"/proc/{pid}/status").get("VmRSS", 0)
            except OSError:  # it just ended
                pass
    return total


def read_status(path: str = "/proc/self/status") -> dict[str, int]:
    """kB values of /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


def child_main(spec: dict) -> None:
    # FunASR prints notices to stdout and logs at INFO; none of it is ours (stdout is captured anyway).
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(sys.stderr):
        result = measure(spec)
    Path(spec["out"]).write_text(json.dumps(result))


def count_params(model) -> int:
    """Parameters, counting int8's dynamically quantized Linears too (their weights are
    packed, not Parameters, and parameters() leaves them out)."""
    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if callable(getattr(m, "weight", None)):  # torch.ao dynamic quantized Linear
            n += m.weight().numel() + (m.bias().numel() if m.bias() is not None else 0)
    return n


def measure(spec: dict) -> dict:
    from plugin.audio.decode import decode
    from plugin.config import AudioConfig, ModelConfig
    from plugin.flow.analysis import analyze_audio
    from plugin.model.loading import EmotionModel

    t_start = time.perf_counter()
    r: dict = {"rss_start_mb": read_status()["VmRSS"] / 1024, "cpus": len(os.sched_getaffinity(0))}

    with PeakRss() as load:
        t0 = time.perf_counter()
        model = EmotionModel(ModelConfig(path=spec["model"], device="cpu"))
        r["load_s"] = time.perf_counter() - t0
    r["load"] = load.summary()
    r["rss_model_mb"] = r["load"]["end_mb"]
    r["describe"] = model.describe()
    r["params"] = count_params(model.automodel.model)

    cfg = AudioConfig()
    wav = Path(spec["work"]) / "decoded.wav"
    with PeakRss() as dec:
        t0 = time.perf_counter()
        audio = decode(spec["src"], wav, cfg.max_duration_s)
        r["decode_s"] = time.perf_counter() - t0
    r["decode"] = dec.summary()
    # ffmpeg is our child: its memory is not in our RSS, so it is reported on its own.
    r["ffmpeg_peak_mb"] = r["decode"]["child_peak_mb"]
    r["wav_mb"] = wav.stat().st_size / 2**20
    r["duration_s"], r["channels"] = audio.duration, audio.channels

    marks = []

    def on_progress(done: int, total: int) -> None:
        if not marks:  # the first call comes once VAD and windowing are done
            marks.append(time.perf_counter())
            ana.mark()

    with PeakRss() as ana:
        t0 = time.perf_counter()
        analysis, notes = analyze_audio(audio, model, cfg, {0: "agent", 1: "customer"}, on_progress)
        r["analyze_s"] = time.perf_counter() - t0
    r["vad_s"] = (marks[0] if marks else t0) - t0
    r["classify_s"] = r["analyze_s"] - r["vad_s"]
    r["analyze"] = ana.summary()
    r["vad"], r["classify"] = ana.parts if len(ana.parts) == 2 else (ana.parts[0], ana.parts[0])
    r["notes"] = notes
    r["segments"] = len(analysis.segments)
    r["per_role"] = {role: s.segments for role, s in analysis.roles.items()}
    r["total_pipeline_s"] = r["decode_s"] + r["analyze_s"]
    r["total_s"] = time.perf_counter() - t_start
    # Not ru_maxrss: resetting VmHWM (clear_refs) resets the peak that ru_maxrss reports too.
    r["whole_peak_mb"] = max(r["rss_start_mb"], r["load"]["peak_mb"], r["decode"]["peak_mb"], r["analyze"]["peak_mb"])
    r["peak_method"] = ("VmHWM reset per stage via /proc/self/clear_refs, and VmRSS sampled every 20 ms"
                        if ana.hwm_reset else "VmRSS sampled every 20 ms (VmHWM reset refused here)")
    return r


if __name__ == "__main__":
    main()
