"""What transcripts cost: windows per second for emotion2vec alone, with SenseVoice, and
SenseVoice alone (ours and FunASR's stock generate), on the same 3 s windows.

    .venv/bin/python bench/asr.py [--geometry large] [--asr-geometry small] [--windows 32]
                                  [--device auto|cpu|cuda] [--variants emotion,emotion+asr,asr,...]
                                  [--rounds 5] [--markdown docs/benchmarks.md]

Random weights of the production geometries (emotion2vec+ large, SenseVoiceSmall), built
with FunASR's own classes: the compute does not depend on the weight values. Variants,
each in a child process of its own (its peak RSS is its own: for emotion+asr, the memory
of both models loaded), loaded once and then run in interleaved rounds:

  emotion      plugin.model.loading.EmotionModel.classify (what runs without asr)
  emotion+asr  classify, then plugin.model.asr.SpeechModel.transcribe on the same windows
               (what the pipeline does with asr on)
  asr          SpeechModel.transcribe alone (FunASR's AutoModel.generate, our batches,
               asr.precision auto: int8 on a CPU with AVX2)
  asr-fp32     the same in fp32
  asr-stock    FunASR's AutoModel.generate with its defaults (batch 1 on the CPU)
  paraformer   SpeechModel.transcribe with Paraformer-zh (SeacoParaformer, its real sizes,
               3 hotwords) instead of SenseVoice; not run unless named

Printed: median seconds per round and its range, windows per second, each variant's
ratio to emotion alone (per-round ratios: median and range), peak RSS. The issue's target
on the 2-core CPU: asr adds no more than the emotion model's own time per window, i.e.
emotion+asr / emotion <= 2.0.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import inference as inf  # noqa: E402  (its children, windows and speech recording)
from bench._report import command_line, table_text  # noqa: E402

VARIANTS = ("emotion", "emotion+asr", "asr", "asr-fp32", "asr-stock", "paraformer")
DEFAULT_VARIANTS = "emotion,emotion+asr,asr,asr-fp32,asr-stock"


def main() -> None:
    args = parse_args()
    if args.child:
        return inf.child_main(args, child_prepare, child_variant)
    bad = [v for v in args.variants.split(",") if v not in VARIANTS]
    if bad:
        sys.exit(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    variants = args.variants.split(",")
    env = run_child("env", args, {})
    device = env["device"]
    with tempfile.TemporaryDirectory(prefix="callmood-bench-asr-") as tmp:
        work = Path(tmp)
        inf.progress(f"device: {env['device_name']}; torch {env['torch']}, funasr {env['funasr']}")
        inf.prepare_windows(work, args.windows, args.windows)
        prep = run_child("prepare", args, {"geometry": args.geometry, "asr_geometry": args.asr_geometry,
                                           "paraformer": "paraformer" in variants})
        inf.progress(f"emotion2vec {args.geometry}: {prep['emotion_params'] / 1e6:.0f} M parameters; "
                     f"SenseVoice {args.asr_geometry}: {prep['asr_params'] / 1e6:.0f} M")
        specs = {v: {**prep, "device": device, "work": str(work), "count": args.windows} for v in variants}
        results = interleaved(variants, args, specs)
        text = report(args, env, prep, results)
        print(text, flush=True)
        if args.markdown:
            with open(args.markdown, "a", encoding="utf-8") as f:
                f.write("\n" + text + "\n")
            inf.progress(f"appended to {args.markdown}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometry", default="large", help="emotion2vec: tiny, base, large")
    ap.add_argument("--asr-geometry", default="small", help="SenseVoice: tiny, small")
    ap.add_argument("--windows", type=int, default=32, help="3 s windows per round")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", default="", help="append the results to this Markdown file")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    return ap.parse_args()


# --------------------------------------------------------------------------- parent

class Child(inf.Child):
    """bench/inference.py's child, running this file."""

    script = Path(__file__).resolve()


def run_child(role: str, args: argparse.Namespace, spec: dict) -> dict:
    child = Child(role, args, spec)
    try:
        return child.answer()
    except inf.ChildFailed as exc:
        sys.exit(f"{role} failed ({exc})")
    finally:
        child.close()


def interleaved(variants: list[str], args: argparse.Namespace, specs: dict[str, dict]) -> dict[str, dict]:
    """Each variant loaded once, then ``args.rounds`` rounds, the order rotating each round."""
    children, out = {}, {}
    try:
        for v in variants:
            inf.progress(f"loading {v} ...")
            children[v] = Child(v, args, specs[v])
            out[v] = {**children[v].answer(), "rounds": []}
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                res = children[v].run()
                out[v]["rounds"].append(res["seconds"])
                out[v]["rss_mb"] = res["rss_mb"]
                inf.progress(f"round {r + 1}/{args.rounds}: {v} {res['seconds']:.2f}s")
    finally:
        for child in children.values():
            child.close()
    return out


def report(args: argparse.Namespace, env: dict, prep: dict, results: dict) -> str:
    base = results.get("emotion")
    rows = []
    for v, r in results.items():
        med = statistics.median(r["rounds"])
        ratio = "-"
        if base and v != "emotion":
            per = [a / b for a, b in zip(r["rounds"], base["rounds"])]
            ratio = f"{statistics.median(per):.2f} ({min(per):.2f}-{max(per):.2f})"
        rows.append([v, f"{med:.2f} ({min(r['rounds']):.2f}-{max(r['rounds']):.2f})",
                     f"{args.windows / med:.2f}", ratio, f"{r['rss_mb']:.0f}", r.get("describe", "")])
    lines = [f"## Transcript benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             "", f"`{command_line()}`", "",
             f"{env['device_name']} ({env['cpus']} CPUs), torch {env['torch']}, funasr {env['funasr']}, "
             f"Python {env['python']}; emotion2vec {args.geometry} ({prep['emotion_params'] / 1e6:.0f} M "
             f"parameters), SenseVoice {args.asr_geometry} ({prep['asr_params'] / 1e6:.0f} M), random weights; "
             f"{args.windows} windows of 3 s per round, {args.rounds} interleaved rounds.", "",
             *table_text(["variant", "seconds: median (range)", "windows/s", "x emotion alone: median (range)",
                          "peak RSS MB", "model"], rows)]
    stock = results.get("asr-stock")
    for v in ("asr", "asr-fp32", "paraformer"):
        if stock and v in results:
            per = [b / a for a, b in zip(results[v]["rounds"], stock["rounds"])]
            lines += ["", f"{v}: {statistics.median(per):.2f}x as fast as FunASR's stock generate "
                          f"(per-round ratios, median; range {min(per):.2f}-{max(per):.2f})."]
    if base and "emotion+asr" in results:
        per = [a / b for a, b in zip(results["emotion+asr"]["rounds"], base["rounds"])]
        verdict = "met" if statistics.median(per) <= 2.0 else "NOT met"
        lines += ["", f"Target (asr adds no more than the emotion model's own time per window: "
                      f"emotion+asr / emotion <= 2.0): {verdict} (median {statistics.median(per):.2f})."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- children

def child_prepare(spec: dict) -> dict:
    from plugin.model.sensevoice_dir import build_sensevoice_dir

    emotion = inf.child_prepare({"geometry": spec["geometry"], "model": str(inf.CACHE / f"model-{spec['geometry']}")})
    asr_dir = inf.CACHE / f"sensevoice-{spec['asr_geometry']}"
    if not (asr_dir / "model.pt").exists():
        tmp = asr_dir.with_name(asr_dir.name + ".part")
        build_sensevoice_dir(tmp, spec["asr_geometry"])
        tmp.rename(asr_dir)
    import torch

    state = torch.load(asr_dir / "model.pt", map_location="cpu")["state_dict"]
    out = {"emotion_model": emotion["model"], "emotion_params": emotion["params"], "asr_model": str(asr_dir),
           "asr_params": sum(t.numel() for t in state.values())}
    if spec.get("paraformer"):
        from plugin.model.paraformer_dir import build_paraformer_dir

        para = inf.CACHE / "paraformer-large"
        if not (para / "model.pt").exists():
            tmp = para.with_name(para.name + ".part")
            build_paraformer_dir(tmp, "large")
            tmp.rename(para)
        out["paraformer_model"] = str(para)
    return out


def child_variant(variant: str, spec: dict, reply) -> None:
    import resource

    from plugin.config import AsrConfig, ModelConfig
    from plugin.model.asr import SpeechModel
    from plugin.model.loading import EmotionModel

    device = spec["device"]
    wins = list(np.load(Path(spec["work"]) / "windows.npy")[:spec["count"]])
    emotion = speech = stock = None
    described = []
    if "emotion" in variant:
        emotion = EmotionModel(ModelConfig(path=spec["emotion_model"], device=device))
        emotion.classify(wins[:emotion.batch_size])  # warm-up, not timed
        described.append(emotion.describe())
    if variant in ("asr", "asr-fp32", "emotion+asr"):
        precision = "fp32" if variant == "asr-fp32" else "auto"
        speech = SpeechModel(AsrConfig(path=spec["asr_model"], precision=precision), device,
                             emotion.threads if emotion else 0)
        speech.transcribe(wins[:speech.batch_size])
        described.append(speech.describe())
    if variant == "paraformer":
        speech = SpeechModel(AsrConfig(path=spec["paraformer_model"], hotwords=["投诉", "退款", "12315"]), device)
        speech.transcribe(wins[:speech.batch_size])
        described.append(speech.describe())
    if variant == "asr-stock":
        from funasr import AutoModel

        stock = AutoModel(model=spec["asr_model"], device=device, disable_update=True, disable_pbar=True,
                          log_level="ERROR")
        stock.generate(input=wins[:2])
        described.append("FunASR AutoModel.generate, its defaults")
    reply({"describe": "; ".join(described)})
    for _ in sys.stdin:
        t0 = time.perf_counter()
        if emotion is not None:
            emotion.classify(wins)
        if speech is not None:
            speech.transcribe(wins)
        if stock is not None:
            stock.generate(input=wins)
        seconds = time.perf_counter() - t0
        reply({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


if __name__ == "__main__":
    main()
