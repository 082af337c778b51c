"""What a file that ffmpeg could not read as audio looks like instead, from its first bytes.

A recording URL that answers with an error page, an expired S3 link (an XML error), a
screenshot attached to the ticket: "not an audio file (looks like PNG)" says what happened
where ffmpeg's own words ("Format not on whitelist", "Invalid argument") do not.

Only asked after ffmpeg has refused the file, so a guess never refuses a file ffmpeg
reads. Each signature is one no audio container starts with.
"""

from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 512

# (signature at offset 0, what it is)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "ZIP or an Office document"),
    (b"PK\x05\x06", "ZIP or an Office document"),
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "RAR"),
    (b"\x7fELF", "a Linux program"),
)


def looks_like(path: str | Path) -> str | None:
    """A short name for what the file seems to be when it is plainly not audio, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return None
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"avif", b"mif1"):
        return "HEIC/AVIF image"
    return _text_kind(head)


def _text_kind(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()  # a UTF-8 BOM, then blanks
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:HEAD_BYTES]:
        return "HTML: a web page or an error page, not the recording"
    if text.startswith(b"<?xml"):
        return "XML: an error answer from the recording store?"
    if text.startswith(b"{") or (text.startswith(b"[") and text[1:2] in (b"{", b"\"", b"]", b"\n", b" ")):
        return "JSON: an API answer, not the recording"
    return None
