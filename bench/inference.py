"""Inference throughput: stock FunASR vs the tutorial's recipe vs ours, on the same windows.

    .venv/bin/python bench/inference.py [--geometry base,large] [--windows 48] [--device auto|cpu|cuda]
                                        [--variants stock,seed,ours,ours-int8,ours@64] [--rounds 5]
                                        [--markdown docs/benchmarks.md]

One run, one machine, one set of 3 s windows cut from real synthesized speech, and for
each emotion2vec geometry (random weights, built with FunASR's own class: the compute
does not depend on the weight values) these variants:

  stock     funasr.AutoModel(...).generate(input=[windows...]) with FunASR's defaults
            (batch 1, fp32, 4 torch threads whatever the machine has)
  seed      the tutorial the project grew from: a Flask /predict service that saves each
            upload to a file and calls generate on it, and a client that cuts the recording
            into 3 s pieces with pydub and POSTs them one after another
  ours      plugin.model.loading.EmotionModel with the batched engine (precision 'auto': by
            the CPU's features, int8 where it has AVX2; bf16 on CUDA); ours-int8 / ours-bf16 /
            ours-fp16 / ours-fp32 pin it,
            and a batch size after "@" sets model.batch_size (ours-bf16@256)

Each variant runs in its own child process, so its peak RSS (and GPU memory) is its own;
it loads once, then the variants run in interleaved rounds (stock, ours, stock, ours ...,
--rounds of them), so whatever else this shared machine does lands on all of them alike:
the tables give medians, and each ratio to stock as the median of the per-round ratios
with its range.
Printed per geometry: seconds, audio-seconds per wall-second, RTF, speed-up over stock,
label agreement (with stock, and with our fp32 for the reduced precisions), the largest
score difference, peak memory and, on CUDA, achieved TFLOP/s against the device's peak.
Progress goes to stderr, the tables to stdout; --markdown appends them, with the command,
device, versions and date, to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugin.core.data import EMOTIONS, normalize_label  # noqa: E402  (numpy only: the parent stays torch-free)
from bench._report import table_text  # noqa: E402

RATE = 16000
WINDOW_S = 3
WIN = WINDOW_S * RATE
CACHE = Path(tempfile.gettempdir()) / "callmood-bench"  # recordings and model dirs, reused across runs

CPU_VARIANTS = "stock,seed,ours,ours-fp32"
CUDA_VARIANTS = "stock,seed,ours,ours-fp16,ours-fp32"
OURS_PRECISION = {"ours": "auto", "ours-fp32": "fp32", "ours-int8": "int8", "ours-bf16": "bf16",
                  "ours-fp16": "fp16"}
KNOWN_VARIANTS = ("stock", "seed", *OURS_PRECISION)


def known_variant(v: str) -> bool:
    name, at, batch = v.partition("@")
    if at:
        return name in OURS_PRECISION and batch.isdigit() and 0 < int(batch) <= 1024
    return name in KNOWN_VARIANTS

# Dense peak TFLOP/s by GPU name (first match wins, so longer names come first):
# (bf16/fp16 tensor cores, tf32 tensor cores, plain fp32).
GPU_PEAKS = [
    ("H100 PCIe", (756, 378, 51)),
    ("H100 NVL", (835, 418, 60)),
    ("H100", (989, 494, 67)),  # SXM (the name reads e.g. "NVIDIA H100 80GB HBM3")
    ("H200", (989, 494, 67)),
    ("A100", (312, 156, 19.5)),
    ("L40S", (362, 183, 91.6)),
    ("L4", (121, 60, 30)),
]

# A call-center exchange; repeated (with varying pauses) to fill the recording.
SENTENCES = [
    "Hello, thank you for calling. My name is Anna, how can I help you today?",
    "I have been waiting for my refund for three weeks and nobody answers my emails.",
    "I am sorry to hear that. Could you give me your order number, please?",
    "It is four five seven two one. I already gave it to your colleague twice!",
    "Thank you. I can see the return arrived at our warehouse on the twelfth.",
    "Then why is my money still not back? This is really unacceptable.",
    "I understand your frustration. I will escalate this to our finance team right now.",
    "Fine. But I want a confirmation by email today, not next week.",
    "Of course. You will receive it within the hour. Is there anything else?",
    "No, that is all. Thank you for finally helping me.",
]


# --------------------------------------------------------------------------- parent

def main() -> None:
    args = parse_args()
    if args.child:
        return child_main(args)

    env = run_child("env", args, {})
    device = env["device"]
    cuda = device == "cuda"
    windows = args.windows or (2048 if cuda else 48)
    # stock and seed classify one window at a time: their per-window rate is reached on a
    # few hundred windows, while the GPU needs thousands to be measured at throughput.
    per_window_windows = min(args.stock_windows or (256 if cuda else windows), windows)
    variants = [v.strip() for v in (args.variants or (CUDA_VARIANTS if cuda else CPU_VARIANTS)).split(",") if v.strip()]
    bad = [v for v in variants if not known_variant(v)]
    if bad:
        sys.exit(f"unknown variant(s) {bad}; choose from {', '.join(KNOWN_VARIANTS)} "
                 "(an 'ours' variant may name its batch size: ours-bf16@256)")
    geometries = [g.strip() for g in args.geometry.split(",") if g.strip()]

    with tempfile.TemporaryDirectory(prefix="callmood-bench-") as tmp:
        work = Path(tmp)
        progress(f"device: {env['device_name']}; torch {env['torch']}, funasr {env['funasr']}")
        seg_info = prepare_windows(work, windows, per_window_windows)
        sections = []
        for geometry in geometries:
            prep = run_child("prepare", args, {"geometry": geometry, "model": str(CACHE / f"model-{geometry}")})
            progress(f"{geometry}: {prep['params'] / 1e6:.1f} M parameters, "
                     f"{prep['flops_per_window'] / 1e9:.1f} GFLOP per 3 s window")
            specs = {v: {"model": prep["model"], "device": device, "work": str(work),
                         "count": per_window_windows if v in ("stock", "seed") else windows} for v in variants}
            results = interleaved(variants, args, specs, args.rounds, geometry)
            for v, r in results.items():
                r["windows"] = specs[v]["count"]
                r["audio_s"] = r["windows"] * WINDOW_S
                r["seconds"] = statistics.median(r["rounds"])
            section = report(geometry, prep, env, results, work, windows, per_window_windows, seg_info)
            print(section["text"], flush=True)
            sections.append(section)
        if args.markdown:
            write_markdown(Path(args.markdown), env, sections)
            progress(f"appended to {args.markdown}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometry", default="base", help="comma-separated: tiny, base, large")
    ap.add_argument("--windows", type=int, default=0, help="3 s windows (default 48 on CPU, 2048 on CUDA)")
    ap.add_argument("--stock-windows", type=int, default=0,
                    help="windows for the per-window variants stock and seed (default: all on CPU, 256 on CUDA)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--variants", default="", help=f"default on CPU {CPU_VARIANTS}; on CUDA {CUDA_VARIANTS}")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds: each variant runs once per round, in turn; medians and ranges")
    ap.add_argument("--markdown", default="", help="append the results to this Markdown file")
    # Internal: one variant in a child process (see child_main).
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    return ap.parse_args()


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ChildFailed(Exception):
    pass


class Child:
    """One role in a fresh interpreter of its own, talking JSON lines over its stdin and a
    pipe. A variant's child loads its model once and runs a timed pass per ``run()``; its
    peak RSS (and GPU memory) is its own, and no variant inherits another's threads, caches
    or allocator state. Its chatter (FunASR, werkzeug) goes to a log shown only on failure."""

    script = Path(__file__).resolve()  # the benchmark whose --child it runs (bench/asr.py has its own)

    def __init__(self, role: str, args: argparse.Namespace, spec: dict):
        self.role = role
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        spec = {**spec, "device": spec.get("device", args.device)}
        cmd = [sys.executable, str(self.script), "--child", role, "--spec", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)

    def answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.seek(0)
            tail = "\n".join(self.log.read().strip().splitlines()[-25:])
            raise ChildFailed(f"exit {self.proc.returncode}:\n{tail}")
        return json.loads(line)

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def run_child(role: str, args: argparse.Namespace, spec: dict) -> dict:
    """A one-answer role (env, prepare); exits the benchmark when it fails."""
    child = Child(role, args, spec)
    try:
        return child.answer()
    except ChildFailed as exc:
        sys.exit(f"{role} failed ({exc})")
    finally:
        child.close()


def interleaved(variants: list[str], args: argparse.Namespace, specs: dict[str, dict], rounds: int,
                label: str) -> dict[str, dict]:
    """Every variant loaded once (one child each), then ``rounds`` rounds in which each runs
    once, in turn (stock, ours, stock, ours ...; the order rotates each round so none is
    always first). Whatever else the shared machine does lands on every variant alike.
    Per variant: its description, and the seconds of each round."""
    children, out = {}, {}
    try:
        for v in variants:
            progress(f"{label}: loading {v} ...")
            try:
                child = Child(v, args, specs[v])
                out[v] = {**child.answer(), "rounds": []}
                children[v] = child
            except ChildFailed as exc:
                progress(f"{label}: {v} FAILED to load: {exc}")
        for r in range(rounds):
            live = [v for v in variants if v in children]
            order = live[r % len(live):] + live[:r % len(live)] if live else []
            for v in order:
                try:
                    res = children[v].run()
                except ChildFailed as exc:
                    progress(f"{label}: {v} FAILED in round {r + 1}: {exc}")
                    children.pop(v).close()
                    continue
                out[v]["rounds"].append(res["seconds"])
                out[v].update({k: res[k] for k in res if k != "seconds"})
                progress(f"{label}: round {r + 1}/{rounds}: {v} {res['seconds']:.2f}s")
    finally:
        for child in children.values():
            child.close()
    return {v: r for v, r in out.items() if r["rounds"]}


def prepare_windows(work: Path, windows: int, per_window_windows: int) -> dict:
    """Speech recording -> decode -> N windows of 3 s (work/windows.npy) + the seed's WAV."""
    from plugin.audio.decode import decode

    src = speech_recording(windows * WINDOW_S + 1)
    t0 = time.perf_counter()
    audio = decode(src, work / "decoded.wav")
    decode_s = time.perf_counter() - t0
    if audio.frames < windows * WIN:
        sys.exit(f"recording too short: {audio.duration:.1f}s for {windows} windows")
    wins = np.stack([audio.channel(0, i * WIN, (i + 1) * WIN) for i in range(windows)])
    np.save(work / "windows.npy", wins)
    # The seed's client reads a 16 kHz mono WAV (the tutorial's required input), exactly its
    # windows end to end, so its pydub pieces are the same samples as everyone's windows.
    write_wav(work / "seed_input.wav", wins[:per_window_windows])
    (work / "decoded.wav").unlink()
    progress(f"segments: {windows} windows of {WINDOW_S} s from {src.name} (decoded in {decode_s:.1f}s)")
    return {"recording": src.name, "windows": windows}


def speech_recording(seconds: float) -> Path:
    """A mono recording of real synthesized speech (tests.speech), cached in CACHE.

    Up to 10 minutes are synthesized; longer recordings loop that with ffmpeg, so a
    2048-window CUDA run does not hold hours of float64 audio in memory while synthesizing.
    """
    from plugin.audio.decode import ffmpeg_exe
    from tests.speech import speak, write_conversation

    seconds = int(np.ceil(seconds))
    path = CACHE / f"speech-{seconds}s.wav"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    base_s = min(seconds, 600)
    turns, t, i = [], 0.5, 0
    while True:
        text = SENTENCES[i % len(SENTENCES)]
        samples, sr = speak(text)
        if t + len(samples) / sr > base_s - 0.3:
            break
        turns.append((0, t, text))
        t += len(samples) / sr + 0.35 + 0.15 * (i % 4)  # short, varying pauses: nearly all speech
        i += 1
    progress(f"synthesizing {base_s} s of speech ({len(turns)} sentences) ...")
    base = write_conversation(CACHE / f"speech-base-{base_s}s.tmp", turns, base_s, channels=1, rate=RATE,
                              fmt="wav_pcm")
    tmp = path.with_suffix(".part.wav")
    if seconds > base_s:
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1",
                        "-i", str(base), "-t", str(seconds), "-c:a", "pcm_s16le", str(tmp)], check=True)
        base.unlink()
    else:
        base.rename(tmp)
    tmp.rename(path)
    return path


def write_wav(path: Path, wins: np.ndarray) -> None:
    """Windows (float32 from 16-bit PCM, so the round trip is exact) as a 16 kHz mono WAV."""
    pcm = np.round(wins.reshape(-1) * 32768.0).clip(-32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


# --------------------------------------------------------------------------- report

def gpu_peak(name: str, precision: str, tf32: bool) -> float | None:
    for key, (half, tf32_peak, fp32) in GPU_PEAKS:
        if key in name:
            if precision in ("bf16", "fp16"):
                return half
            return tf32_peak if tf32 else fp32
    return None


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(labels_of(a) == labels_of(b)))


def labels_of(m: np.ndarray) -> np.ndarray:
    # The seed's matrix holds only the returned label's confidence (NaN elsewhere).
    return np.nanargmax(np.where(np.isnan(m), -np.inf, m), axis=1)


def top2_margin(m: np.ndarray) -> np.ndarray:
    s = np.sort(m, axis=1)
    return s[:, -1] - s[:, -2]


def report(geometry: str, prep: dict, env: dict, results: dict, work: Path, windows: int,
           per_window_windows: int, seg_info: dict) -> dict:
    cuda = env["device"] == "cuda"
    scores = {v: np.load(work / f"{v}.npy") for v in results}
    stock = results.get("stock")
    fp32_ref = next((v for v, r in results.items() if v.startswith("ours") and r["precision"] == "fp32"), None)

    header = ["variant", "precision", "windows", "seconds", "audio-s/s", "RTF", "x stock", "x stock range",
              "agree stock", "agree fp32", "max Δ stock", "peak RSS MB", "GPU peak MB"]
    if cuda:
        header += ["TFLOP/s", "% peak"]
    rows, notes = [], []
    for v, r in results.items():
        speed = r["audio_s"] / r["seconds"]
        row = [v, r["precision"], str(r["windows"]), f"{r['seconds']:.2f}", f"{speed:.1f}",
               f"{r['seconds'] / r['audio_s']:.4f}"]
        if stock and v != "stock":
            k = min(r["windows"], stock["windows"])
            diff = np.abs(scores[v][:k] - scores["stock"][:k])
            mid, low, high = ratio(r, stock)
            row += [f"{mid:.2f}", f"{low:.2f}–{high:.2f}",
                    f"{100 * agreement(scores[v][:k], scores['stock'][:k]):.1f}%",
                    agree_fp32_cell(v, r, results, scores, fp32_ref, notes),
                    f"{np.nanmax(diff):.1e}"]
        else:
            row += ["1.00" if v == "stock" else "n/a", "—", "—" if v == "stock" else "n/a",
                    agree_fp32_cell(v, r, results, scores, fp32_ref, notes), "—" if v == "stock" else "n/a"]
        row += [f"{r['peak_rss_mb']:.0f}", f"{r['gpu_peak_mb']:.0f}" if r.get("gpu_peak_mb") is not None else "—"]
        if cuda:
            tflops = prep["flops_per_window"] * r["windows"] / r["seconds"] / 1e12
            peak = gpu_peak(env["device_name"], r["precision"], r.get("tf32", False))
            row += [f"{tflops:.1f}", f"{100 * tflops / peak:.1f}%" if peak else "n/a"]
        rows.append(row)

    title = (f"emotion2vec {geometry} geometry ({prep['params'] / 1e6:.{0 if prep['params'] > 1e7 else 1}f} M "
             "parameters, random weights), "
             f"{env['device_name']}")
    lines = [f"## {title}", "", *table_text(header, rows), ""]
    n_rounds = max((len(r["rounds"]) for r in results.values()), default=0)
    lines += [f"- {n_rounds} interleaved round(s): each variant loaded once in a process of its own, then "
              f"run once per round in turn (the order rotating); seconds, audio-s/s and RTF are the "
              f"medians, x stock the median of the per-round ratios and its range (lowest–highest).",
              f"- {windows} windows of {WINDOW_S} s speech ({windows * WINDOW_S} audio-s), "
              f"{prep['flops_per_window'] / 1e9:.1f} GFLOP per window (torch FlopCounterMode, one forward)."]
    if per_window_windows < windows:
        lines.append(f"- stock and seed ran on the first {per_window_windows} windows: they classify one window "
                     "at a time, so their rate per audio-second does not depend on the count; "
                     "agreement and score differences are over those windows.")
    if "seed" in results:
        lines.append("- seed: labels come back as the tutorial's JSON (top emotion and its confidence), so its "
                     "agreement is by label and max Δ compares that confidence only.")
    lines += notes
    lines += targets(geometry, cuda, results, scores)
    for v, r in results.items():
        lines.append(f"- {v}: {r['describe']}; model load {r['load_s']:.1f}s")
    return {"geometry": geometry, "text": "\n".join(lines) + "\n"}


def ratio(r: dict, stock: dict) -> tuple[float, float, float]:
    """Speed over stock's in the same round (median, lowest, highest): each round ran every
    variant once, in turn, so a busy spell of the shared machine shows in the range, not as
    one variant's luck."""
    per_round = [(r["audio_s"] / a) / (stock["audio_s"] / b) for a, b in zip(r["rounds"], stock["rounds"])]
    return statistics.median(per_round), min(per_round), max(per_round)


def agree_fp32_cell(v: str, r: dict, results: dict, scores: dict, fp32_ref: str | None, notes: list) -> str:
    """Agreement of a reduced-precision 'ours' with our fp32, plus the margin-restricted note."""
    if not v.startswith("ours") or r["precision"] == "fp32" or fp32_ref is None:
        return "—"
    ref = scores[fp32_ref]
    k = min(len(ref), len(scores[v]))
    ref, mine = ref[:k], scores[v][:k]
    plain = agreement(mine, ref)
    diff = float(np.max(np.abs(mine - ref)))
    clear = top2_margin(ref) > 2 * diff
    if clear.any():
        restricted = (f"on the {int(clear.sum())} windows whose fp32 top-2 margin exceeds 2 × max Δ "
                      f"({2 * diff:.1e}) agreement is {100 * agreement(mine[clear], ref[clear]):.1f}%")
    else:
        restricted = f"no window has an fp32 top-2 margin above 2 × max Δ ({2 * diff:.1e})"
    notes.append(
        f"- {v} vs {fp32_ref} (fp32): {100 * plain:.1f}% of {k} labels agree, max Δ {diff:.1e}; {restricted}. "
        f"(A score error below half the top-2 margin cannot flip a label, so the disagreements are at "
        f"windows closer to a tie than that; random weights give near-uniform scores: median fp32 "
        f"margin here {np.median(top2_margin(ref)):.1e}.)")
    return f"{100 * plain:.1f}%"


def targets(geometry: str, cuda: bool, results: dict, scores: dict) -> list[str]:
    """The targets (issue 16), where this run measured what they need; by the median ratio."""
    stock = results.get("stock")
    if not stock:
        return []
    out = []
    for v, r in results.items():
        if not v.startswith("ours"):
            continue
        speed = r["audio_s"] / r["seconds"]
        mid, low, high = ratio(r, stock)
        k = min(r["windows"], stock["windows"])
        agree = agreement(scores[v][:k], scores["stock"][:k])
        if cuda and geometry == "large":
            ok = mid >= 10 and speed >= 3000
            out.append(f"- target (GPU, large: >= 10x stock and >= 3000x real time): {v} "
                       f"{mid:.1f}x stock ({low:.1f}–{high:.1f}), {speed:.0f}x real time -> "
                       f"{'met' if ok else 'NOT met'}")
        elif not cuda and geometry in ("base", "large"):
            ok = mid >= 3 and agree >= 0.99
            out.append(f"- target (CPU, {geometry}: >= 3x stock fp32 at >= 99% label agreement, median of the "
                       f"rounds): {v} {mid:.2f}x ({low:.2f}–{high:.2f}), {100 * agree:.1f}% -> "
                       f"{'met' if ok else 'NOT met'}")
    return out


def write_markdown(path: Path, env: dict, sections: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable)
    exe_s = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    argv = [a for a in sys.argv]
    argv[0] = os.path.relpath(Path(argv[0]).resolve(), ROOT)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [f"## Inference benchmark, {now}", "",
            f"- command: `{shlex.join([exe_s, *argv])}`",
            f"- device: {env['device_name']}" + ("" if env["device"] == "cuda" else f", {env['cpus']} cores"),
            f"- torch {env['torch']}, funasr {env['funasr']}, Python {env['python']}",
            "- dtype per variant: the `precision` column (stock and seed are FunASR's fp32)", ""]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(text) + "\n" + "\n".join(s["text"].replace("## ", "### ", 1) for s in sections) + "\n")


# --------------------------------------------------------------------------- children

def child_main(args: argparse.Namespace, prepare=None, variant=None) -> None:
    """A child's life: answer its role (env, prepare, or a variant's rounds) on a duplicate
    of stdout. ``prepare`` and ``variant``: another benchmark's (bench/asr.py), else ours."""
    spec = json.loads(args.spec)
    # FunASR prints notices to stdout and logs at INFO despite log_level; none of it is ours:
    # our answers go to the parent on a duplicate of the real stdout, everything else to stderr.
    answers = os.fdopen(os.dup(1), "w")

    def reply(obj: dict) -> None:
        answers.write(json.dumps(obj) + "\n")
        answers.flush()

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):
        import warnings

        warnings.simplefilter("ignore")
        role = args.child
        if role == "env":
            reply(child_env(spec))
        elif role == "prepare":
            reply((prepare or child_prepare)(spec))
        else:
            (variant or child_variant)(role, spec, reply)


def child_env(spec: dict) -> dict:
    import platform
    from importlib.metadata import version

    import torch

    device = spec["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
    else:
        models = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")]
        name = models[0] if models else platform.processor() or "unknown CPU"
    return {"device": device, "device_name": name, "cpus": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "funasr": version("funasr"), "python": platform.python_version()}


def child_prepare(spec: dict) -> dict:
    """Build (or reuse) the random-weight model dir; count FLOPs of one window's forward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from plugin.model.modeldir import build_random_model_dir

    model_dir = Path(spec["model"])
    if not (model_dir / "model.pt").exists():
        tmp = model_dir.with_name(model_dir.name + ".part")
        build_random_model_dir(tmp, spec["geometry"])
        tmp.rename(model_dir)
    automodel = load_automodel(str(model_dir), "cpu")
    model = automodel.model.eval()
    x = torch.randn(1, WIN)
    # FLOPs do not depend on the device or dtype: count once on the CPU, batch 1.
    # (Matmuls, convolutions and attention; norms and activations are not counted.)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        feats = model.extract_features(x, padding_mask=None)["x"]
        model.proj(feats.mean(dim=1))
    return {"model": str(model_dir), "flops_per_window": counter.get_total_flops(),
            "params": sum(p.numel() for p in model.parameters())}


def load_automodel(model_dir: str, device: str):
    from funasr import AutoModel

    # FunASR's defaults otherwise (notably ncpu=4 threads): that is the stock behaviour.
    return AutoModel(model=model_dir, device=device, disable_update=True, disable_pbar=True, log_level="ERROR")


def child_variant(variant: str, spec: dict, reply) -> None:
    """Load the variant once, say so, then run one timed pass per line the parent sends
    ("run"), answering each with a JSON line on ``reply``; the scores of the first pass are
    saved for the agreement columns. Ends at end of input."""
    import torch

    device, count, work = spec["device"], spec["count"], Path(spec["work"])
    runner = {"stock": run_stock, "seed": run_seed}.get(variant, run_ours)(variant, spec["model"], device,
                                                                          work, count)
    info = next(runner)
    reply(info)
    rounds = 0
    for line in sys.stdin:
        if line.strip() != "run":
            continue
        result, scores = next(runner)
        if rounds == 0:
            np.save(work / f"{variant}.npy", scores)
        rounds += 1
        if device == "cuda":
            result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            result["tf32"] = torch.get_float32_matmul_precision() != "highest"
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        reply(result)
    runner.close()


def load_windows(work: Path, count: int) -> list[np.ndarray]:
    # Only this variant's windows in memory: they count in its RSS (192 KB each).
    wins = np.array(np.load(work / "windows.npy", mmap_mode="r")[:count])
    return list(wins)


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def run_stock(variant: str, model_dir: str, device: str, work: Path, count: int):
    """Loads, yields its description once, then one timed pass over the windows per next()."""
    wins = load_windows(work, count)
    t0 = time.perf_counter()
    model = load_automodel(model_dir, device)
    load_s = time.perf_counter() - t0
    kw = dict(granularity="utterance", extract_embedding=False)
    model.generate(input=wins[:1], **kw)  # warm-up, not timed
    yield {"load_s": load_s, "precision": "fp32",
           "describe": f"funasr AutoModel.generate, batch 1, {torch_threads()} torch threads"}
    while True:
        sync(device)
        t0 = time.perf_counter()
        res = model.generate(input=wins, **kw)
        sync(device)
        seconds = time.perf_counter() - t0
        scores = np.zeros((count, len(EMOTIONS)), dtype=np.float32)
        for i, r in enumerate(res):
            for token, s in zip(r["labels"], r["scores"]):
                scores[i, EMOTIONS.index(normalize_label(token))] = s
        yield {"seconds": seconds}, scores


def run_ours(variant: str, model_dir: str, device: str, work: Path, count: int):
    from plugin.config import ModelConfig
    from plugin.model.loading import EmotionModel

    wins = load_windows(work, count)
    t0 = time.perf_counter()
    name, _, batch = variant.partition("@")  # ours-bf16@256: batch size 256 (default: the config's)
    model = EmotionModel(ModelConfig(path=model_dir, device=device, precision=OURS_PRECISION[name],
                                     batch_size=int(batch or 0)))
    load_s = time.perf_counter() - t0
    model.classify(wins[:model.batch_size])  # warm-up: one batch, not timed
    yield {"load_s": load_s, "precision": model.precision, "describe": model.describe()}
    while True:
        sync(device)
        t0 = time.perf_counter()
        rows = model.classify(wins)
        sync(device)
        seconds = time.perf_counter() - t0
        yield {"seconds": seconds}, np.array([[row[e] for e in EMOTIONS] for row in rows], dtype=np.float32)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# ---- seed: the tutorial's /predict service and its 3 s recipe

def seed_app(model_dir: str, device: str):
    """The tutorial's Flask service: one model, POST /predict with a multipart 'file'.

    The tutorial shows the service's API (its health answer and its JSON with filename,
    emotion, confidence, timestamp) and its client code, not the server's source; this is
    the plain server that API describes: the upload is saved to a temporary file and that
    path is given to AutoModel.generate, one request at a time.
    """
    from flask import Flask, jsonify, request

    app = Flask("emotion2vec-seed")
    model = load_automodel(model_dir, device)  # tutorial: AutoModel(model="iic/emotion2vec_plus_large")

    @app.route("/health")
    def health():
        return jsonify({"status": "success", "message": "Model is ready for inference"})

    @app.route("/predict", methods=["POST"])
    def predict():
        if "file" not in request.files:
            return jsonify({"error": "no file"}), 400
        upload = request.files["file"]
        fd, path = tempfile.mkstemp(suffix=".wav")
        os.close(fd)
        try:
            upload.save(path)
            res = model.generate(path, granularity="utterance", extract_embedding=False)[0]
        finally:
            os.remove(path)
        best = int(np.argmax(res["scores"]))
        return jsonify({"filename": upload.filename, "emotion": res["labels"][best].split("/")[-1],
                        "confidence": float(res["scores"][best]),
                        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})

    return app


def analyze_emotion(url: str, audio_file_path: Path):
    """The tutorial's client call, as written there (a new connection per request)."""
    import requests

    with open(audio_file_path, "rb") as f:
        response = requests.post(url, files={"file": f})
    if response.status_code == 200:
        result = response.json()
        return result["emotion"], result["confidence"]
    print("Error:", response.text, file=sys.stderr)
    return None, None


def split_and_analyze(url: str, audio_path: Path, tmp: Path, segment_sec: int = 3) -> list:
    """The tutorial's long-audio recipe: pydub cuts 3 s pieces, each exported and POSTed in turn."""
    from pydub import AudioSegment

    audio = AudioSegment.from_wav(audio_path)
    duration = len(audio) // 1000
    results = []
    for i in range(0, duration, segment_sec):
        segment = audio[i * 1000:(i + segment_sec) * 1000]
        temp_file = tmp / f"temp_segment_{i}.wav"
        segment.export(temp_file, format="wav")
        results.append(analyze_emotion(url, temp_file))
    return results


def run_seed(variant: str, model_dir: str, device: str, work: Path, count: int):
    import threading

    from werkzeug.serving import make_server

    from plugin.audio.decode import ffmpeg_exe

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    from pydub import AudioSegment

    AudioSegment.converter = ffmpeg_exe()  # pydub reads/writes WAV itself; this only quiets its lookup

    t0 = time.perf_counter()
    app = seed_app(model_dir, device)
    load_s = time.perf_counter() - t0
    server = make_server("127.0.0.1", 0, app, threaded=True)  # Flask's dev server: app.run(...)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/predict"
    tmp = Path(tempfile.mkdtemp(prefix="seed-", dir=work))
    try:
        warm = tmp / "warm.wav"
        write_wav(warm, np.array(np.load(work / "windows.npy", mmap_mode="r")[:1]))
        analyze_emotion(url, warm)  # warm-up, not timed
        yield {"load_s": load_s, "precision": "fp32",
               "describe": f"Flask /predict on werkzeug, pydub 3 s pieces POSTed in turn, "
                           f"generate on the saved file, {torch_threads()} torch threads"}
        while True:
            t0 = time.perf_counter()
            answers = split_and_analyze(url, work / "seed_input.wav", tmp)
            seconds = time.perf_counter() - t0
            if len(answers) != count or any(e is None for e, _ in answers):
                raise SystemExit(f"seed: {len(answers)} answers for {count} pieces, "
                                 f"{sum(e is None for e, _ in answers)} failed")
            # Only the top label and its confidence come back: the rest of the row is unknown.
            scores = np.full((count, len(EMOTIONS)), np.nan, dtype=np.float32)
            for i, (emotion, confidence) in enumerate(answers):
                scores[i, EMOTIONS.index(normalize_label(emotion))] = confidence
            yield {"seconds": seconds}, scores
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
