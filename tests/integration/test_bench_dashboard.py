"""bench/dashboard.py at a small size: it seeds, asks every request, and prints its table.

The figures mean nothing here (a shared machine, 2,000 calls): the test checks that a run
completes on each database, every request answers, and the report has its parts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]
LABELS = ("list", "filtered", "phone search", "late page", "CSV", "viewer list", "call page")


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_dashboard_benchmark_small_run(db, request, tmp_path):
    if db == "postgres":
        request.getfixturevalue("postgres_admin")  # skipped where PostgreSQL is not reachable
    md = tmp_path / "bench.md"
    cmd = [sys.executable, str(ROOT / "bench" / "dashboard.py"), "--calls", "2000", "--alerts", "200", "--db", db,
           "--rounds", "2", "--postgres", PG_ADMIN_URL, "--markdown", str(md)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert f"### {db}" in out and "2,000 calls" in out and "200 alerts" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith("| request")]
    assert [r.split("|")[1].strip() for r in rows] == list(LABELS)
    assert all(r.rstrip(" |").endswith("PASS") for r in rows), out
    assert "## Red-flag list benchmark" in md.read_text(encoding="utf-8")
    assert not list(tmp_path.glob("callmood-bench-dashboard-*"))  # its temporary folder went
