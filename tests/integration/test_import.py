"""`callmood import`: files, folders and globs of real recordings (made with ffmpeg), their
sidecars (CSV and JSON), one call per content, hostile sidecars, the worker analysing an
imported call, retention and `forget` of the copies, and the scheduled drop folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from plugin import config as config_mod
from plugin.audio.fetch import FetchError
from plugin.commands.imports import import_command
from plugin.core.cron import cron_trigger
from plugin.core.data import Download
from plugin.flow.batch_import import import_paths, run_drop_folder, scheduled_import
from plugin.flow.recording import imported_file
from plugin.store.tables import Call
from tests.conftest import make_config
from tests.helpers import make_audio

HEADER = "file,customer_id,customer_phone,agent_id,queue,ticket_id,channels\n"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def calls(svc) -> dict[str, Call]:
    with svc.sessions() as s:
        found = {c.external_id: c for c in s.execute(select(Call).where(Call.source == "import")).scalars()}
        for c in found.values():
            _ = c.jobs  # loaded while the session is open
        return found


def config_file(tmp_path: Path, cfg: config_mod.Config) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(f"data_dir: {cfg.data_dir}\ndatabase: {{url: '{cfg.database_url}'}}\n"
                 f"rules: {{path: '{cfg.rules_path}'}}\n")
    return p


def run_import(conf: Path, *args) -> tuple[int, str, str]:
    """`callmood import ARGS` in this process, as a shell runs it (umask restored after)."""
    umask = os.umask(0o077)
    try:
        r = CliRunner().invoke(import_command, ["-c", str(conf), *map(str, args)])
    finally:
        os.umask(umask)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def day(tmp_path) -> Path:
    """A folder of a day's recordings: two formats, a subfolder, a stereo call, and things
    that are not recordings."""
    d = tmp_path / "day"
    (d / "sub").mkdir(parents=True)
    make_audio(d / "0001", "wav_pcm", 8000, 1, 3.0)
    make_audio(d / "sub" / "0002", "mp3", 16000, 2, 3.0)
    (d / "notes.txt").write_text("not a recording")
    make_audio(d / ".partial", "wav_pcm", 8000, 1, 1.0)  # an upload still in progress (rsync, scp)
    return d


def test_folder_glob_and_csv_sidecar(tmp_path, db_url, app_factory, day):
    cfg = make_config(tmp_path, None, db_url)
    svc, _ = app_factory(cfg)
    (day / "calls.csv").write_text(
        HEADER + "0001.wav,cust-42,138 0013 8000,agent-7,support,T-1,\n"
                 'sub/0002.mp3,cust-43,+8613900139000,,billing,,"0=agent,1=customer"\n', encoding="utf-8")
    other = tmp_path / "other"
    other.mkdir()
    make_audio(other / "loose", "ogg_opus", 16000, 1, 2.0)
    code, out, err = run_import(config_file(tmp_path, cfg), day, str(other / "*.ogg"))
    assert code == 0, err
    assert out.splitlines()[-2:] == ["3 new call(s), 0 already imported, 0 refused",
                                     "The workers analyse the new calls (`callmood serve` or `callmood worker`)."]
    got = calls(svc)
    a, b, c = got[sha(day / "0001.wav")], got[sha(day / "sub" / "0002.mp3")], got[sha(other / "loose.ogg")]
    assert (a.customer_id, a.customer_phone, a.agent_id, a.queue, a.ticket_id, a.channel_roles) == \
        ("cust-42", "+8613800138000", "agent-7", "support", "T-1", None)
    assert (b.customer_id, b.customer_phone, b.agent_id, b.queue, b.channel_roles) == \
        ("cust-43", "+8613900139000", None, "billing", {"0": "agent", "1": "customer"})
    assert (c.customer_id, c.event["sidecar"], c.event["file"]) == (None, None, "loose.ogg")
    assert a.event == {"file": "0001.wav", "bytes": (day / "0001.wav").stat().st_size, "sidecar": "calls.csv:2"}
    assert a.recording_url == f"import:{a.external_id}" and a.status == "received" and len(a.jobs) == 1
    for call in got.values():  # each bytes' private copy, named by its hash
        copy = Path(cfg.data_dir) / "imports" / call.external_id
        assert sha(copy) == call.external_id and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE((Path(cfg.data_dir) / "imports").stat().st_mode) == 0o700
    assert (day / "0001.wav").exists()  # `callmood import` leaves the operator's files where they are


def test_the_same_bytes_are_one_call_whatever_their_name(tmp_path, db_url, app_factory):
    cfg = make_config(tmp_path, None, db_url)
    svc, _ = app_factory(cfg)
    d = tmp_path / "in"
    d.mkdir()
    first = make_audio(d / "a-first", "wav_pcm", 16000, 1, 2.0)
    shutil.copyfile(first, d / "b-copy.wav")
    side = tmp_path / "meta.json"
    side.write_text(json.dumps([{"file": "in/a-first.wav", "customer_id": "cust-1", "customer_phone": 13800138000,
                                 "ticket_id": 5501, "channels": {"0": "customer"}}]))
    conf = config_file(tmp_path, cfg)
    code, out, err = run_import(conf, d, "--sidecar", side)
    assert code == 0, err
    assert out.splitlines()[-2] == "1 new call(s), 1 already imported, 0 refused"
    [call] = calls(svc).values()
    assert (call.customer_id, call.customer_phone, call.ticket_id, call.channel_roles) == \
        ("cust-1", "+8613800138000", "5501", {"0": "customer"})
    code, out, _ = run_import(conf, first, d / "b-copy.wav")  # and once more, later
    assert code == 0 and out.splitlines()[-1] == "0 new call(s), 2 already imported, 0 refused"
    assert f"already  call {call.id:<6} {first.resolve()} (received)" in out
    assert len(calls(svc)) == 1 and len(list((Path(cfg.data_dir) / "imports").iterdir())) == 1


def test_bad_sidecar_rows_are_named_by_line_and_column_and_their_files_refused(tmp_path, sqlite_url, app_factory):
    cfg = make_config(tmp_path, None, sqlite_url)
    svc, _ = app_factory(cfg)
    d = tmp_path / "drop"
    d.mkdir()
    for name in ("good", "badphone", "badid", "badroles"):
        make_audio(d / name, "wav_pcm", 8000, 1, 1.5 + len(name) / 10)  # different bytes each
    (d / "calls.csv").write_text(
        HEADER
        + "good.wav,cust-1,,,,,\n"
        + "badphone.wav,cust-2,call me maybe,,,,\n"
        + "badid.wav,cust 3<script>,,,,,\n"
        + "../../etc/passwd,cust-4,,,,,\n"
        + 'badroles.wav,cust-5,,,,,"0=boss"\n'
        + "/etc/shadow,cust-6,,,,,\n"
        + "good.wav,cust-7,,,,,\n"
        + "short,row\n", encoding="utf-8")
    code, out, err = run_import(config_file(tmp_path, cfg), d)
    assert code == 1
    refused = [ln for ln in err.splitlines() if ln.startswith("refused")]
    side = d.resolve() / "calls.csv"
    assert refused == [
        (f"refused  {side}: calls.csv:5: file: '../../etc/passwd' must stay inside the sidecar's folder "
         "(no '..', '.' or hidden names)"),
        f"refused  {side}: calls.csv:7: file: '/etc/shadow' must be relative to the sidecar's folder, not absolute",
        f"refused  {side}: calls.csv:8: file: 'good.wav' is already described at calls.csv:2",
        f"refused  {side}: calls.csv:9: has 2 cells; the header has 7",
        (f"refused  {d.resolve() / 'badid.wav'}: calls.csv:4: customer_id: contains U+0020 (space); "
         "allowed are letters, digits and # + - . : @ _"),
        (f"refused  {d.resolve() / 'badphone.wav'}: calls.csv:3: customer_phone: contains 'c'; a phone number "
         "has digits, a leading +, spaces, dashes and parentheses"),
        f"refused  {d.resolve() / 'badroles.wav'}: calls.csv:6: channels: role 'boss' must be agent or customer",
    ]
    assert out.splitlines()[-2] == "1 new call(s), 0 already imported, 7 refused"
    [call] = calls(svc).values()
    assert call.customer_id == "cust-1" and call.external_id == sha(d / "good.wav")
    assert len(list((Path(cfg.data_dir) / "imports").iterdir())) == 1  # nothing of /etc was copied

    # A JSON sidecar's items are numbered; a sidecar that is not one stops the import at once.
    (d / "calls.csv").unlink()
    side = tmp_path / "bad.json"
    side.write_text(json.dumps([{"file": "drop/badphone.wav", "customer_phone": "12"},
                                {"file": "drop/badid.wav", "phone": "+8613800138000"}]))
    code, _, err = run_import(config_file(tmp_path, cfg), d, "--sidecar", side)
    assert code == 1
    assert "bad.json: item 1: customer_phone: has 2 digits; a phone number has 3 to 20" in err
    assert "bad.json: item 2: 'phone': unknown key (known: file, customer_id, customer_phone" in err
    (d / "calls.csv").write_text("file,customer,phone\n", encoding="utf-8")
    code, out, err = run_import(config_file(tmp_path, cfg), d)
    assert code == 1 and err.strip().splitlines()[-1] == ("Error: sidecar calls.csv:1: column 'customer': unknown column (known: "
                                         "file, customer_id, customer_phone, agent_id, queue, ticket_id, channels)")
    code, _, err = run_import(config_file(tmp_path, cfg), tmp_path / "nowhere", str(tmp_path / "*.flac"),
                              tmp_path / "config.yaml")
    assert code == 1
    assert f"refused  {tmp_path / 'nowhere'}: no such file or folder" in err
    assert f"refused  {tmp_path / '*.flac'}: no file matches" in err
    assert f"refused  {tmp_path / 'config.yaml'}: not a recording by its extension (.yaml;" in err


def test_a_sidecar_link_out_of_its_folder_is_refused(tmp_path, sqlite_url, app_factory):
    cfg = make_config(tmp_path, None, sqlite_url)
    svc, _ = app_factory(cfg)
    d = tmp_path / "drop"
    d.mkdir()
    secret = make_audio(tmp_path / "elsewhere", "wav_pcm", 8000, 1, 1.0)
    (d / "link.wav").symlink_to(secret)
    (d / "calls.csv").write_text(HEADER + "link.wav,cust-1,,,,,\n")
    code, _, err = run_import(config_file(tmp_path, cfg), d, "--sidecar", d / "calls.csv")
    assert code == 1
    assert "calls.csv:2: file: 'link.wav' leads outside the sidecar's folder" in err
    assert calls(svc) == {}  # and the walk never follows the link itself


def test_local_files_are_never_a_webhooks(tmp_path, sqlite_url, app_factory, model_dir):
    """No webhook source is called "import"; a call of that source is read from data_dir/imports
    by its hash, and the worker refuses any other path."""
    cfg = make_config(tmp_path, model_dir, sqlite_url)
    svc, client = app_factory(cfg, model=True)
    assert client.post("/webhooks/import", json={"call_id": "x", "recording_url": "/etc/passwd"}).status_code == 404
    with pytest.raises(FetchError, match="must be a file in data_dir/imports"):
        imported_file("/etc/passwd", cfg.data_dir)
    with pytest.raises(FetchError, match="must be a file in data_dir/imports"):
        imported_file(str(Path(cfg.data_dir) / "imports" / ".." / "callmood.db"), cfg.data_dir)
    # A row that claims the source anyway (written by hand into the database, say) fails.
    from connectors.sources.base import Received
    from plugin.core.data import CallEvent
    [a] = svc.intake().take("import", Received(events=[CallEvent("import", "../../etc/passwd", "import:x")]))
    svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    with svc.sessions() as s:
        call = s.get(Call, a.call_id)
        assert (call.status, call.error) == ("failed", "import: an imported file is named by its sha256 (64 hex digits)")
    assert Download("import:x").path is None  # no source sets it


def test_the_worker_analyses_an_imported_call_and_retention_and_forget_remove_its_copy(
        tmp_path, model_dir, db_url, app_factory, clock, day):
    cfg = make_config(tmp_path, model_dir, db_url, retention={"recordings_days": 7})
    svc, client = app_factory(cfg, model=True, clock=clock)
    (day / "calls.csv").write_text(HEADER + 'sub/0002.mp3,cust-43,,agent-9,support,,"0=agent,1=customer"\n'
                                            "0001.wav,cust-44,,,,,\n")
    report = import_paths([str(day)], cfg, svc.intake())
    assert len(report.new) == 2
    for _ in report.new:
        svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    mono, stereo = (client.get(f"/api/calls/{cid}").json for _, cid in report.new)  # 0001.wav, sub/0002.mp3
    assert stereo["status"] == "analyzed" and mono["status"] == "analyzed", (stereo, mono)
    assert {s["role"] for s in stereo["segments"]} == {"agent", "customer"}
    assert stereo["duration_s"] == pytest.approx(3.0, abs=0.1) and stereo["source"] == "import"
    copies = Path(cfg.data_dir) / "imports"
    assert len(list(copies.iterdir())) == 2  # kept (a re-run reads it again) ...

    removed = svc.forget("cust-44")  # ... until its customer is forgotten
    assert removed["calls"] == 1 and removed["recording copies"] == 1
    assert [p.name for p in copies.iterdir()] == [stereo["call_id"]]
    svc.purge()
    assert [p.name for p in copies.iterdir()] == [stereo["call_id"]]
    clock.advance(days=8)  # ... or retention.recordings_days after it was received
    [recs] = [p for p in svc.purge(dry_run=True) if p.kind == "recordings"]
    assert recs.count == 1
    svc.purge()
    assert list(copies.iterdir()) == []
    _rerun(svc, stereo["id"])  # a re-run once the copy is gone says so
    svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
    again = client.get(f"/api/calls/{stereo['id']}").json
    assert again["status"] == "failed" and "is no longer kept" in again["error"], again


def _rerun(svc, call_id: int) -> int:
    with svc.sessions.begin() as s:
        return svc.jobs.enqueue(s, call_id).id


def test_the_drop_folder_is_imported_on_its_schedule(tmp_path, model_dir, db_url, app_factory, day):
    cfg = make_config(tmp_path, model_dir, db_url, imports={"folder": str(day), "schedule": "0 2 * * *",
                                                       "min_age_s": 0},
                      sources={"twilio": {"sync_schedule": "CRON_TZ=Asia/Shanghai 30 1 * * 1-5"}},
                      rules={"reload_interval_s": 0})
    svc, _ = app_factory(cfg, model=True)
    runtime = svc.runtime(deliveries=False).start()
    try:
        job = runtime.scheduler.get_job("import")
        assert job is not None and str(job.trigger) == str(cron_trigger("0 2 * * *"))
        sync = runtime.scheduler.get_job("sync_twilio")
        assert "day_of_week='mon,tue,wed,thu,fri', hour='1', minute='30'" in str(sync.trigger)
        assert str(sync.trigger.timezone) == "Asia/Shanghai"
    finally:
        runtime.stop(0)

    (day / "calls.csv").write_text(HEADER + "0001.wav,cust-42,,,,,\n")
    scheduled_import(svc.config, svc.intake())  # what the scheduler runs at 02:00
    got = calls(svc)
    assert {c.customer_id for c in got.values()} == {"cust-42", None}
    done = day / "done"
    assert sorted(p.relative_to(done).as_posix() for p in done.rglob("*.*")) == ["0001.wav", "sub/0002.mp3"]
    assert sorted(p.name for p in day.iterdir()) == [".partial.wav", "calls.csv", "done", "notes.txt", "sub"]

    # The same recording dropped again is moved without a second call; a file still being
    # written waits for the next run; the done folder is never imported again.
    shutil.copyfile(done / "0001.wav", day / "0001.wav")
    make_audio(day / "late", "wav_pcm", 8000, 1, 1.0)
    fresh = svc.config.model_copy(update={"imports": svc.config.imports.model_copy(update={"min_age_s": 3600})})
    os.utime(day / "0001.wav", (0, 0))
    report = run_drop_folder(fresh, svc.intake())
    assert (len(report.new), len(report.already), report.waiting, report.moved) == (0, 1, 1, 1)
    assert (done / "0001.1.wav").exists() and (day / "late.wav").exists()
    assert len(calls(svc)) == 2


def test_schedules_are_checked_when_the_config_loads(tmp_path):
    def problem(data):
        with pytest.raises(config_mod.ConfigError) as e:
            config_mod.from_dict(data)
        return str(e.value)
    assert problem({"imports": {"folder": "/in", "schedule": "0 2 * *"}}) == (
        "config: imports.schedule: '0 2 * *' is not a cron schedule: five fields (minute hour day month weekday), "
        'e.g. "0 2 * * *" for 02:00 every day')
    assert problem({"imports": {"schedule": "0 2 * * *"}}) == "config: imports: schedule needs folder (the drop folder to import)"
    assert problem({"imports": {"sidecar": "../calls.csv"}}).startswith("config: imports.sidecar: must be a file name")
    assert problem({"sources": {"tccc": {"sync_schedule": "0 2 * * 8"}}}) == (
        "config: sources.tccc.sync_schedule: weekday '8' must be 0-7 (0 and 7: Sunday) or a name (sun, mon...)")
    assert problem({"sources": {"twilio": {"sync_schedule": "CRON_TZ=Mars/Base 0 2 * * *"}}}).endswith(
        "unknown time zone 'Mars/Base' after CRON_TZ= (e.g. Asia/Shanghai, UTC)")
    # crontab's weekdays: 0 is Sunday (APScheduler alone would read Monday).
    sunday = cron_trigger("CRON_TZ=UTC 0 2 * * 0").get_next_fire_time(None, datetime(2026, 11, 24, tzinfo=UTC))
    assert sunday == datetime(2026, 11, 29, 2, 0, tzinfo=UTC) and sunday.strftime("%A") == "Sunday"
