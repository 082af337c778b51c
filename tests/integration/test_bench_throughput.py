"""bench/throughput.py at its smallest: it drives the real processes end to end and prints its tables.

The numbers mean nothing here (a shared 2-core machine, tiny random weights): the test checks
that a whole run completes, every call's deliveries arrive, and the report has its parts."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_benchmark_smallest_run(tmp_path, model_dir):
    # Its own temporary directory, so its cache (recordings, model) is this test's alone; the
    # session's tiny random-weight model stands in for the one the benchmark would build.
    tmp = tmp_path / "tmp"
    cache = tmp / "callmood-bench"
    cache.mkdir(parents=True)
    (cache / "model-tiny").symlink_to(model_dir, target_is_directory=True)
    cmd = [sys.executable, str(ROOT / "bench" / "throughput.py"), "--calls", "2", "--minutes", "0.3-0.4",
           "--workers", "1", "--db", "sqlite", "--geometry", "tiny", "--device", "cpu", "--load-seconds", "2",
           "--load-rate", "50", "--stock-calls", "1", "--timeout", "120", "--markdown", str(tmp_path / "bench.md")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout

    # One row for 1 worker in the SQLite table, every call finished, the load table, the ratio.
    assert "### sqlite" in out
    [row] = [ln for ln in out.splitlines() if ln.startswith("| 1 ")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 11 and all(cells), row
    assert "unfinished" not in out and "—" not in row, out  # every measured column has a value
    assert "### Webhook load: 50 events/s for 2 s" in out
    [load] = [ln for ln in out.splitlines() if ln.startswith("| sqlite ")]
    assert load.split("|")[4].strip() == "100"  # scheduled: 50/s x 2 s
    assert "- capacity: one " in out and "calls of 5 minutes per hour" in out
    assert "- stock: funasr AutoModel.generate" in out and "1 of the 2 calls" in out
    assert "speech share per channel" in out and "--geometry tiny" in out

    # --markdown appends the same section under a dated heading, with the command and versions.
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert md.startswith("## Whole-call throughput benchmark, ") and "- command: `" in md and "funasr " in md
    assert "#### sqlite" in md
