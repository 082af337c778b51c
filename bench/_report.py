"""What every benchmark's report shares: its tables (Markdown that also reads as plain
text) and the command line that made it, relative to the repository."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table_text(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, padded so it also reads as plain text."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(fmt(r) for r in rows)]


def command_line() -> str:
    exe = Path(sys.executable)
    exe_s = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    argv = [os.path.relpath(Path(sys.argv[0]).resolve(), ROOT), *sys.argv[1:]]
    return shlex.join([exe_s, *argv])
