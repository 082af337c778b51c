"""bench/asr.py at its smallest: its child processes load both models, run interleaved
rounds and print the table with the ratios. The numbers mean nothing here (tiny random
weights, a shared machine): the test checks that a whole run completes and reports."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_transcript_benchmark_smallest_run(tmp_path, model_dir, speech_dir):
    # Its own cache, with the session's tiny random-weight models standing in for its builds.
    tmp = tmp_path / "tmp"
    cache = tmp / "callmood-bench"
    cache.mkdir(parents=True)
    (cache / "model-tiny").symlink_to(model_dir, target_is_directory=True)
    (cache / "sensevoice-tiny").symlink_to(speech_dir, target_is_directory=True)
    report = tmp_path / "bench.md"
    cmd = [sys.executable, str(ROOT / "bench" / "asr.py"), "--geometry", "tiny", "--asr-geometry", "tiny",
           "--windows", "2", "--rounds", "2", "--device", "cpu", "--variants", "emotion,emotion+asr,asr,asr-stock",
           "--markdown", str(report)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## Transcript benchmark," in out and "bench/asr.py --geometry tiny" in out
    for variant in ("emotion", "emotion+asr", "asr", "asr-stock"):
        assert f"\n| {variant} " in out
    assert "asr: " in out and "as fast as FunASR's stock generate" in out
    assert "Target (asr adds no more than the emotion model's own time per window" in out
    assert report.read_text() == "\n" + out.rstrip("\n") + "\n"
