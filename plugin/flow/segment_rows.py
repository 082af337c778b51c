"""What was said in a segment, as the cells and the line a person reads: the columns
`callmood analyze --csv` and the upload page's CSV add to each segment's row, and the words
on `callmood analyze`'s own lines.

Words are data from a call: a CSV cell that a spreadsheet would run as a formula gets a '
first (csv_cell, as every export here), and a terminal line gets no control character (an
escape sequence a caller could have spoken into the recognizer's output)."""

from __future__ import annotations

from typing import Any

from plugin.core.data import SegmentResult
from plugin.core.quote_text import clip, one_line
from plugin.flow.report.render import csv_cell

# After the columns each export had before transcripts, so a reader by position still reads.
TRANSCRIPT_COLUMNS = ["text", "language", "tag_emotion", "events"]
LINE_CHARS = 120  # of the words on one terminal line


def transcript_cells(s: SegmentResult) -> list[Any]:
    """text, language, tag_emotion, events (";"-separated) of one segment; empty cells where
    no recognizer ran."""
    return [s.text, s.language, s.tag_emotion, ";".join(s.events) if s.events else ""]


def csv_row(values: list[Any]) -> list[Any]:
    return [csv_cell(v) for v in values]


def said_line(s: SegmentResult) -> str:
    """The segment's words for a terminal: one line, printable, cut to LINE_CHARS ("" when
    no recognizer ran, "(no words)" when it heard none)."""
    if s.text is None:
        return ""
    text = one_line(s.text)
    return clip(text, LINE_CHARS) if text else "(no words)"
