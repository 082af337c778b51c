"""What CallMood writes about calls is readable by its own user only (folders 0700, files
0600), checked by running the real code paths and stat-ing what they made: under a loose
umask (022, what library users and tests have), and through `callmood` (which sets 077
for its whole process, children included). And no log line of ours shows a whole phone
number."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import requests
from sqlalchemy import text

from plugin.core import keys
from plugin.core.data import Download
from plugin.flow.recording import analyze_recording
from plugin.store.engine import make_engine, upgrade
from tests.conftest import event, make_config, signed
from tests.helpers import Reply, make_audio, run_cli


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def modes(root: Path) -> dict[str, int]:
    """Every folder and file under ``root`` (and root itself, as "."): its mode."""
    return {".": mode(root), **{str(p.relative_to(root)): mode(p) for p in root.rglob("*")}}


def loose_umask():
    class Umask:
        def __enter__(self):
            self.old = os.umask(0o022)

        def __exit__(self, *exc):
            os.umask(self.old)
    return Umask()


def assert_private(found: dict[str, int], root: Path) -> None:
    bad = {name: oct(m) for name, m in found.items()
           if m != (0o700 if (root / name).is_dir() or name.endswith("/") else 0o600)}
    assert bad == {}, f"not private: {bad}"


def test_analysing_a_call_makes_only_private_files(tmp_path, model_dir, sqlite_url, emotion_model, recordings):
    cfg = make_config(tmp_path, model_dir, sqlite_url, worker={"keep_recordings": True})
    data_dir = Path(cfg.data_dir)
    url = recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 2, 4.0))
    seen: dict[str, int] = {}

    def keep_lease(force: bool = False) -> None:
        # Called between the stages: the download, then the decoded audio, are on disk now.
        for name, m in modes(data_dir).items():
            seen[name + ("/" if (data_dir / name).is_dir() else "")] = m

    with loose_umask():
        assert not data_dir.exists()
        analyze_recording(7, [Download(url)], {0: "agent", 1: "customer"}, emotion_model, cfg, keep_lease)
    workdir = next(Path(n).parent for n in seen if n.endswith("/recording0"))
    assert {n for n in seen if n.startswith(f"{workdir}/") and not n.endswith("/")} == {
        f"{workdir}/recording0", f"{workdir}/decoded0.wav"}  # both were seen on disk
    assert seen[f"{workdir}/recording0"] == seen[f"{workdir}/decoded0.wav"] == 0o600
    assert seen["./"] == seen["tmp/"] == seen[f"{workdir}/"] == 0o700
    after = modes(data_dir)
    assert after == {".": 0o700, "tmp": 0o700, "recordings": 0o700, "recordings/call-7": 0o600}


def test_the_database_and_the_secret_key_are_private(tmp_path):
    data_dir = tmp_path / "var"
    with loose_umask():
        engine = make_engine(f"sqlite:///{data_dir / 'callmood.db'}")
        upgrade(engine)
        with engine.begin() as c:  # a write in WAL mode: -wal and -shm exist while connected
            c.execute(text("CREATE TABLE t (x INTEGER)"))
            c.execute(text("INSERT INTO t VALUES (1)"))
            found = modes(data_dir)
        engine.dispose()
        keys.secret_key(None, data_dir)
    assert {"callmood.db-wal", "callmood.db-shm"} <= set(found)
    assert_private(found, data_dir)
    assert mode(data_dir / keys.FILE_NAME) == 0o600 and mode(data_dir) == 0o700


def test_an_existing_database_file_is_made_private(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    db = shared / "old.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    make_engine(f"sqlite:///{db}").dispose()
    assert mode(db) == 0o600
    assert mode(shared) == 0o755  # a folder we did not make is not ours to change


def test_callmood_commands_create_private_files(tmp_path, sqlite_url):
    conf = tmp_path / "config.yaml"
    data_dir = tmp_path / "var"
    conf.write_text(f"data_dir: {data_dir}\n")  # the default database: an SQLite file in data_dir
    with loose_umask():
        r = run_cli("migrate", "-c", conf)
        assert r.returncode == 0, r.stderr
        assert os.umask(0o022) == 0o022  # the command's umask does not outlive it here
    assert_private(modes(data_dir), data_dir)
    assert {"callmood.db", "secret_key"} <= set(modes(data_dir))


def test_no_log_line_shows_a_whole_phone_number(tmp_path, model_dir, sqlite_url, clock, app_factory,
                                                recordings, crm, wecom, caplog):
    from plugin.cli import setup_logging

    phone = "+8613811112222"
    crm.default = Reply(400, {"error": f"no customer with phone {phone}"})  # a CRM quoting it back
    cfg = make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom)
    svc, client = app_factory(cfg, model=True, clock=clock)
    levels = {n: logging.getLogger(n).level for n in ("plugin", "connectors", "rules")}
    setup_logging("INFO")  # the filters `callmood` puts on every handler, here on pytest's
    try:
        # A recording named after the caller, and a download that fails on it.
        missing = f"{recordings.url}/rec/{phone}.wav"
        url = recordings.serve_file(f"/rec/{phone[1:]}.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 4.0))
        for ext, rec in (("p-1", url), ("p-2", missing)):
            body = event(ext, rec, customer_phone=phone)
            assert client.post("/webhooks/generic", **signed(body)).status_code == 202
            svc.pipeline().run_job(svc.jobs.claim("worker"), "worker")
        with requests.Session() as http:
            http.trust_env = False
            svc.outbox().drain(http, "sender")
        try:
            raise RuntimeError(f"sink answered about {phone}")
        except RuntimeError:
            logging.getLogger("plugin.test").exception("while sending to %s", phone)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    logged = caplog.text
    assert "is dead after 1 attempt(s)" in logged  # the CRM's answer was logged ...
    assert "+86138****2222" in logged  # ... with the number masked
    assert phone not in logged and phone[1:] not in logged
