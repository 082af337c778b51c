"""Review of issue 15 (operations): what the review found and fixed, each shown here.

- A drop folder is written by others: a file swapped for a link (or a FIFO) between the
  walk and the read is refused, not followed; a sidecar that is a link is not read.
- POST /api/calls/rerun with a "since" longer than a datetime can subtract answers, not 500s.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from plugin.flow import batch_import
from plugin.flow.batch_import import BatchImportError, import_paths
from plugin.store.tables import Call
from tests.conftest import make_config
from tests.helpers import make_audio


def _swap_after_walk(monkeypatch, swap):
    """Run ``swap(found)`` right after the walk, before any file is read: the race."""
    walk = batch_import._collect

    def collect(*args, **kwargs):
        found = walk(*args, **kwargs)
        swap(found)
        return found

    monkeypatch.setattr(batch_import, "_collect", collect)


def test_a_file_swapped_for_a_link_after_the_walk_is_not_followed(tmp_path, sqlite_url, app_factory, monkeypatch):
    cfg = make_config(tmp_path, None, sqlite_url)
    svc, _ = app_factory(cfg)
    drop = tmp_path / "drop"
    drop.mkdir()
    make_audio(drop / "a", "wav_pcm", 8000, 1, 1.0)
    make_audio(drop / "b", "wav_pcm", 8000, 1, 1.0)
    (tmp_path / "private").mkdir()
    secret = make_audio(tmp_path / "private" / "secret", "wav_pcm", 16000, 1, 1.5)  # not the drop folder's

    def swap(found):
        a, b = sorted(found)
        a.unlink()
        a.symlink_to(secret)
        b.unlink()
        os.mkfifo(b)  # open() of a FIFO with no writer would block the scheduler forever

    _swap_after_walk(monkeypatch, swap)
    report = import_paths([str(drop)], cfg, svc.intake())
    assert report.new == [] and report.already == []
    why = dict(report.refused)
    assert why[str(drop.resolve() / "a.wav")] == "cannot read: is a link now (links are not imported)"
    # Its size (0) refuses it first; opened anyway (swapped after that stat) it would be
    # "cannot read: not a regular file", never a read that blocks.
    assert why[str(drop.resolve() / "b.wav")] in ("empty", "cannot read: not a regular file")
    with svc.sessions() as s:
        assert s.execute(select(Call.id)).first() is None
    assert not (Path(cfg.data_dir) / "imports").exists() or not any((Path(cfg.data_dir) / "imports").iterdir())


def test_a_sidecar_that_is_a_link_is_not_read(tmp_path, sqlite_url, app_factory):
    cfg = make_config(tmp_path, None, sqlite_url)
    svc, _ = app_factory(cfg)
    drop = tmp_path / "drop"
    drop.mkdir()
    make_audio(drop / "a", "wav_pcm", 8000, 1, 1.0)
    private = tmp_path / "private.txt"
    private.write_text("token=s3cr3t-value\n")  # its first line would be echoed as a bad column
    (drop / "calls.csv").symlink_to(private)
    with pytest.raises(BatchImportError) as err:
        import_paths([str(drop)], cfg, svc.intake())
    assert "is a link" in str(err.value) and "s3cr3t" not in str(err.value)


def test_rerun_since_ever_is_not_a_server_error(tmp_path, sqlite_url, app_factory):
    _, sup = app_factory(make_config(tmp_path, None, sqlite_url), role="supervisor")
    r = sup.post("/api/calls/rerun", json={"failed": True, "since": "9" * 31 + "d"})
    assert r.status_code == 200, r.text
    assert r.json["results"] == [] and r.json["queued"] == 0


def test_the_import_reader_refuses_a_fifo_without_blocking(tmp_path):
    from plugin.core import files
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        open(fifo, "rb", opener=files.no_follow_opener).close()  # refused before it opens


def test_a_failure_to_ask_ffmpeg_for_soxr_is_not_kept_for_the_process(monkeypatch):
    import subprocess

    from plugin.audio import decode

    monkeypatch.setattr(decode, "_chosen", [])
    real = subprocess.run
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        if len(calls) == 1:
            raise OSError(11, "Resource temporarily unavailable")  # no fork under load
        return real(cmd, **kwargs)

    monkeypatch.setattr(decode.subprocess, "run", run)
    assert decode.resampler() == decode.SWR  # this decode only: recorded as swr, honestly
    assert decode.resampler() == decode.SOXR  # asked again, and the answer is kept
    assert decode.resampler() == decode.SOXR and len(calls) == 2


def test_the_call_page_of_a_partial_call_of_several_files_is_shown(tmp_path, sqlite_url, app_factory):
    """One file per participant (merged): the summary has ``partial`` but its seconds are per
    file, under ``sources``; the page said "%.1f" of nothing and answered 500."""
    from datetime import UTC, datetime

    svc, admin = app_factory(make_config(tmp_path, None, sqlite_url))
    one = {"source_rate": 8000, "partial": True, "declared_s": 60.0, "decoded_s": 3.0, "narrowband": True}
    two = {"source_rate": 8000, "partial": False, "declared_s": 60.0, "decoded_s": 60.0, "narrowband": True}
    with svc.sessions.begin() as s:
        call = Call(source="generic", external_id="parts-1", recording_url="http://127.0.0.1:9/a.wav",
                    status="analyzed", event={}, received_at=datetime.now(UTC).replace(tzinfo=None),
                    summary={"resampler": "aresample=16000:resampler=soxr", "narrowband": True, "partial": True,
                             "source_rate": 8000, "sources": [one, two]})
        s.add(call)
        s.flush()
        call_id = call.id
    r = admin.get(f"/calls/{call_id}", headers={"Accept-Language": "en"})
    assert r.status_code == 200, r.text[:300]
    assert "partial" in r.text and "3.0 s of 60.0 s declared" in r.text
