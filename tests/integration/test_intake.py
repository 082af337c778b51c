"""What the door stores for every source (plugin/flow/intake.py), on SQLite and PostgreSQL:
participants' recordings gathered into one call, a vendor's push id looked at once; and
what the worker does with them: each participant's file fetched (with the credentials
configured for its host only), decoded and put side by side as agent and customer tracks.

The vendors' own modules are tested in tests/*/test_src_*.py; here the events are built
directly, as a source returns them."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.sources.base import Received, basic_auth
from plugin.core.data import CallEvent, Recording
from plugin.flow.intake import Intake
from plugin.store.tables import Call, Job, WebhookPush
from tests.conftest import event, make_config, signed
from tests.helpers import Reply, at_once, make_audio


def part(session: str, role: str, url: str, rid: str | None = None, **fields) -> CallEvent:
    return CallEvent(source="generic", call_id=session, recording_url=url,
                     recordings=(Recording(url, role, rid),), raw={"part": rid}, **fields)


def jobs_of(svc, call_id):
    with svc.sessions() as s:
        return s.execute(select(Job).where(Job.call_id == call_id).order_by(Job.id)).scalars().all()


def call_row(svc, call_id) -> Call:
    with svc.sessions() as s:
        return s.get(Call, call_id)


def test_participants_are_gathered_into_one_call_analysed_when_both_are_there(tmp_path, db_url, app_factory,
                                                                              clock):
    svc, _ = app_factory(make_config(tmp_path, None, db_url), clock=clock)
    intake = Intake(svc.sessions, svc.jobs)
    [first] = intake.take("generic", Received([part("s-1", "agent", "http://pbx/a.wav", "r-a",
                                                     agent_id="seat-7")], assemble_s=120))
    assert not first.duplicate
    [job] = jobs_of(svc, first.call_id)
    assert job.run_after == clock.now() + timedelta(seconds=120)  # waits for the others
    assert svc.jobs.claim("w") is None

    [again] = intake.take("generic", Received([part("s-1", "agent", "http://pbx/a.wav", "r-a")], assemble_s=120))
    assert again.duplicate and again.call_id == first.call_id

    [second] = intake.take("generic", Received([part("s-1", "customer", "http://pbx/c.wav", "r-c",
                                                      customer_phone="+8613800138000")], assemble_s=120))
    assert (second.call_id, second.duplicate) == (first.call_id, False)
    call = call_row(svc, first.call_id)
    assert call.recordings == [{"url": "http://pbx/a.wav", "role": "agent", "id": "r-a"},
                               {"url": "http://pbx/c.wav", "role": "customer", "id": "r-c"}]
    assert (call.agent_id, call.customer_phone) == ("seat-7", "+8613800138000")  # each part filled in
    [job] = jobs_of(svc, first.call_id)
    assert job.run_after == clock.now()  # complete: due now
    assert svc.jobs.claim("w") == job.id


def test_a_lone_participant_is_analysed_after_the_wait(tmp_path, db_url, app_factory, clock):
    svc, _ = app_factory(make_config(tmp_path, None, db_url), clock=clock)
    [a] = Intake(svc.sessions, svc.jobs).take("generic", Received([part("s-2", "customer", "http://pbx/c.wav")],
                                                                    assemble_s=60))
    assert svc.jobs.claim("w") is None
    clock.advance(seconds=61)
    assert svc.jobs.claim("w") == a.job_id


def test_a_late_participant_queues_the_call_again(tmp_path, db_url, app_factory, clock):
    svc, _ = app_factory(make_config(tmp_path, None, db_url), clock=clock)
    intake = Intake(svc.sessions, svc.jobs)
    [a] = intake.take("generic", Received([part("s-3", "customer", "http://pbx/c.wav", "1")], assemble_s=5))
    clock.advance(seconds=6)
    job_id = svc.jobs.claim("w")
    with svc.sessions.begin() as s:
        assert svc.jobs.finish(s, job_id, "w")
    [late] = intake.take("generic", Received([part("s-3", "agent", "http://pbx/a.wav", "2")], assemble_s=5))
    assert late.call_id == a.call_id and late.job_id != a.job_id
    assert [j.status for j in jobs_of(svc, a.call_id)] == ["done", "queued"]
    assert svc.jobs.claim("w") == late.job_id


def test_two_participants_arriving_together_both_land(tmp_path, db_url, app_factory):
    svc, _ = app_factory(make_config(tmp_path, None, db_url))
    intake = Intake(svc.sessions, svc.jobs)
    intake.take("generic", Received([part("s-4", "agent", "http://pbx/0.wav", "0")], assemble_s=60))
    _, errors = at_once(4, lambda i: intake.take("generic", Received(
        [part("s-4", "customer", f"http://pbx/{i + 1}.wav", str(i + 1))], assemble_s=60)))
    assert errors == []
    with svc.sessions() as s:
        [call] = s.execute(select(Call)).scalars().all()
        assert sorted(p["id"] for p in call.recordings) == ["0", "1", "2", "3", "4"]


def test_the_same_event_at_once_from_many_threads_makes_one_call_and_one_job(tmp_path, db_url, app_factory):
    # The whole-call path inserts first (ON CONFLICT DO NOTHING) and looks only when the
    # call was there: the twins that lose wait for the winner's commit and find its call.
    svc, _ = app_factory(make_config(tmp_path, None, db_url))
    intake = Intake(svc.sessions, svc.jobs)
    ev = CallEvent(source="generic", call_id="c-twins", recording_url="http://pbx/r.wav", customer_id="cust-1",
                   channel_roles={0: "agent", 1: "customer"}, raw={"call_id": "c-twins"})
    taken, errors = at_once(6, lambda _: intake.take("generic", Received([ev])))
    results = [a for accepted in taken for a in accepted]
    assert errors == []
    assert sorted(a.duplicate for a in results) == [False] + [True] * 5
    assert len({(a.call_id, a.job_id) for a in results}) == 1
    with svc.sessions() as s:
        [call] = s.execute(select(Call)).scalars().all()
        [job] = s.execute(select(Job)).scalars().all()
    assert (call.status, call.customer_id, call.identity, call.channel_roles, call.event) == (
        "received", "cust-1", "given", {"0": "agent", "1": "customer"}, {"call_id": "c-twins"})
    assert (job.call_id, job.kind, job.status, job.attempts) == (call.id, "analyze", "queued", 0)
    assert job.run_after == job.created_at == call.received_at


def test_an_event_whose_call_lost_its_job_is_a_duplicate_not_an_error(tmp_path, db_url, app_factory):
    svc, _ = app_factory(make_config(tmp_path, None, db_url))
    intake = Intake(svc.sessions, svc.jobs)
    ev = CallEvent(source="generic", call_id="c-nojob", recording_url="http://pbx/r.wav")
    [first] = intake.take("generic", Received([ev]))
    with svc.sessions.begin() as s:
        s.query(Job).delete()
    [again] = intake.take("generic", Received([ev]))
    assert (again.call_id, again.job_id, again.duplicate) == (first.call_id, None, True)


def test_a_push_id_is_looked_at_once(tmp_path, db_url, app_factory):
    svc, _ = app_factory(make_config(tmp_path, None, db_url))
    intake = Intake(svc.sessions, svc.jobs)
    ev = CallEvent(source="generic", call_id="c-9", recording_url="http://pbx/r.wav")
    assert intake.take("generic", Received([ev], push_id="uuid-1"))[0].duplicate is False
    assert intake.take("generic", Received([ev], push_id="uuid-1")) is None
    with svc.sessions() as s:
        assert s.execute(select(WebhookPush.push_id)).scalars().all() == ["uuid-1"]


def test_participants_files_become_agent_and_customer_tracks(tmp_path, model_dir, sqlite_url, app_factory, fake):
    """Two files (different lengths, one behind basic auth) -> one call, one channel each."""
    store = fake()
    agent = store.serve_file("/agent.mp3", make_audio(tmp_path / "agent", "mp3", 8000, 1, 5.0))
    secret = basic_auth("rec", "s3cret")
    customer_wav = make_audio(tmp_path / "customer", "wav_pcm", 8000, 1, 8.0).read_bytes()
    store.routes["/customer.wav"] = lambda rec: (Reply(200, customer_wav) if rec.headers.get("Authorization")
                                                 == secret else Reply(401, b"who are you"))
    cfg = make_config(tmp_path, model_dir, sqlite_url, sources={"generic": {
        "secret": "k", "download": [{"host": f"127.0.0.1:{store.port}", "username": "rec", "password": "s3cret"}]}})
    svc, client = app_factory(cfg, model=True)
    a, b = Intake(svc.sessions, svc.jobs).take("generic", Received(
        [part("s-5", "agent", agent), part("s-5", "customer", store.url + "/customer.wav")], assemble_s=60))
    assert b.call_id == a.call_id
    job_id = svc.jobs.claim("w")
    assert job_id == a.job_id  # both parts in one push: due at once
    svc.pipeline().run_job(job_id, "w")
    got = client.get(f"/api/calls/{a.call_id}").json
    assert got["status"] == "analyzed", got
    roles = {(s["channel"], s["role"]) for s in got["segments"]}
    assert roles == {(0, "agent"), (1, "customer")}
    assert max(s["end"] for s in got["segments"] if s["role"] == "customer") > 6.0  # the longer file, whole
    assert got["summary"]["files"] == 2
    assert all(r.headers.get("Authorization") == secret for r in store.requests if r.path == "/customer.wav")


def test_credentials_go_to_their_host_only_not_across_a_redirect(tmp_path, sqlite_url, app_factory, fake):
    here, elsewhere = fake(), fake()
    wav = make_audio(tmp_path / "r", "wav_pcm", 8000, 1, 2.0).read_bytes()
    elsewhere.routes["/r.wav"] = Reply(200, wav)
    here.routes["/r.wav"] = Reply(302, b"", {"Location": elsewhere.url + "/r.wav"})
    cfg = make_config(tmp_path, None, sqlite_url, sources={"generic": {
        "secret": "k", "download": [{"host": f"127.0.0.1:{here.port}", "bearer": "TOKEN-1"}]}})
    src_cfg = cfg.source("generic")
    from plugin.audio.fetch import fetch

    cred = src_cfg.credential_for(here.url + "/r.wav")
    assert cred is not None and "TOKEN-1" not in repr(cred)
    got = fetch(here.url + "/r.wav", tmp_path / "out", cfg.fetch, credential=cred)
    assert got.path.read_bytes() == wav
    assert here.requests[0].headers["Authorization"] == "Bearer TOKEN-1"
    assert "Authorization" not in elsewhere.requests[0].headers
    assert src_cfg.credential_for(elsewhere.url + "/r.wav") is None


def test_a_url_with_credentials_points_at_the_setting(tmp_path, model_dir, sqlite_url, app_factory):
    svc, client = app_factory(make_config(tmp_path, model_dir, sqlite_url), model=True)
    r = client.post("/webhooks/generic", **signed(event("cred-1", "http://user:pw@127.0.0.1:9/r.wav")))
    assert r.status_code == 202
    job_id = svc.jobs.claim("w")
    svc.pipeline().run_job(job_id, "w")
    got = client.get(f"/api/calls/{r.json['call_id']}").json
    assert got["status"] == "failed"
    assert "sources.<source>.download" in got["error"] and "pw" not in got["error"]


@pytest.mark.parametrize("entry,problem", [
    ({"host": "rec.example.com"}, "set exactly one of"),
    ({"host": "rec.example.com", "username": "u"}, "username needs a password"),
    ({"host": "https://rec.example.com", "bearer": "t"}, "must be a host name"),
    ({"host": "rec.example.com", "header": "Bad Name", "value": "v"}, "valid header name"),
    # A port that is not one was taken as "no port" (every port of the host) or failed only
    # in the worker, at download time.
    ({"host": "[::1]:abc", "bearer": "t"}, "port must be a number"),
    ({"host": "[::1]x", "bearer": "t"}, r"\[address\]:port"),
    ({"host": "rec.example.com:", "bearer": "t"}, "port must be a number"),
    ({"host": "rec.example.com:99999", "bearer": "t"}, "port must be a number"),
    ({"host": ":443", "bearer": "t"}, "names no host"),
])
def test_download_credentials_are_checked_when_the_config_loads(tmp_path, entry, problem):
    from plugin.config import ConfigError

    with pytest.raises(ConfigError, match=problem):
        make_config(tmp_path, None, "sqlite://", sources={"generic": {"download": [entry]}})


def test_a_call_keeps_at_most_max_parts_files(tmp_path, db_url, app_factory, caplog):
    """A sender pushing part after part of one call (thousands of RecordIds) must not grow its
    row without end; the worker would refuse such a call anyway (more than MAX_PARTS)."""
    from plugin.core.data import MAX_PARTS

    svc, _ = app_factory(make_config(tmp_path, None, db_url))
    intake = Intake(svc.sessions, svc.jobs)
    accepted = [intake.take("generic", Received([part("s-flood", "customer", f"http://pbx/{i}.wav", str(i))],
                                                assemble_s=60))[0] for i in range(MAX_PARTS + 5)]
    assert [a.duplicate for a in accepted] == [False] * MAX_PARTS + [True] * 5
    call = call_row(svc, accepted[0].call_id)
    assert [p["id"] for p in call.recordings] == [str(i) for i in range(MAX_PARTS)]
    assert "already has 8 participants' recordings" in caplog.text
    # One push (a listed call record) naming more parts than that: the first MAX_PARTS are kept.
    many = CallEvent(source="generic", call_id="s-many", recording_url="http://pbx/0.wav",
                     recordings=tuple(Recording(f"http://pbx/{i}.wav", "agent", str(i)) for i in range(20)))
    [a] = intake.take("generic", Received([many], assemble_s=60))
    assert len(call_row(svc, a.call_id).recordings) == MAX_PARTS


def test_a_late_part_while_a_worker_claims_the_job_queues_the_call_again(tmp_path, postgres_url, app_factory):
    """PostgreSQL: the queued job is locked before the door relies on it. Without the lock, a
    worker claiming it at that moment (and reading the call's parts before ours are
    committed) analyses the call without the late part, and no job is left for it."""
    from sqlalchemy import update

    svc, _ = app_factory(make_config(tmp_path, None, postgres_url))
    intake = Intake(svc.sessions, svc.jobs)
    [a] = intake.take("generic", Received([part("s-race", "agent", "http://pbx/a.wav", "a")], assemble_s=60))
    worker = svc.sessions()
    worker.begin()
    worker.execute(update(Job).where(Job.id == a.job_id).values(status="running", lease_owner="w"))  # claimed...
    done = []
    t = threading.Thread(target=lambda: done.append(intake.take("generic", Received(
        [part("s-race", "customer", "http://pbx/c.wav", "c")], assemble_s=60))))
    t.start()
    t.join(1.0)  # the door waits on the worker's row lock
    worker.commit()  # ... and the claim is committed
    worker.close()
    t.join(10)
    [[late]] = done
    assert late.job_id != a.job_id
    assert [(j.id, j.status) for j in jobs_of(svc, a.call_id)] == [(a.job_id, "running"), (late.job_id, "queued")]


@pytest.mark.parametrize("host,expected", [
    ("Rec.Example.com", ("rec.example.com", None)), ("rec.example.com:8443", ("rec.example.com", 8443)),
    ("[::1]", ("::1", None)), ("[::1]:8443", ("::1", 8443)), ("fe80::1", ("fe80::1", None)),
])
def test_download_credential_hosts(host, expected):
    from connectors.sources.base import DownloadCredential

    cred = DownloadCredential(host=host, bearer="t").credential()
    assert (cred.host, cred.port) == expected


def test_a_credential_without_a_port_goes_to_the_default_ports_only():
    from connectors.sources.base import DownloadCredential

    cred = DownloadCredential(host="Rec.Example.com", bearer="t").credential()
    assert cred.applies_to("rec.example.com", 443) and cred.applies_to("REC.example.com", 80)
    assert not cred.applies_to("rec.example.com", 8443) and not cred.applies_to("other.example.com", 443)
    with_port = DownloadCredential(host="rec.example.com:8443", bearer="t").credential()
    assert with_port.applies_to("rec.example.com", 8443) and not with_port.applies_to("rec.example.com", 443)


def test_merging_refuses_what_one_wav_cannot_hold(tmp_path):
    from plugin.audio.decode import DecodedAudio, DecodeError
    from plugin.audio.merge import merge

    huge = DecodedAudio(tmp_path / "x.wav", 1, 16000 * 3600 * 5)  # 5 h: never read, refused first
    with pytest.raises(DecodeError, match="too long to analyse side by side"):
        merge([huge] * 8, tmp_path / "merged.wav")


def test_a_participants_file_does_not_replace_a_whole_call_recording(tmp_path, sqlite_url, app_factory):
    svc, _ = app_factory(make_config(tmp_path, None, sqlite_url))
    intake = Intake(svc.sessions, svc.jobs)
    whole = CallEvent(source="generic", call_id="s-9", recording_url="http://pbx/whole.wav",
                      channel_roles={0: "agent", 1: "customer"})
    [a] = intake.take("generic", Received([whole], assemble_s=60))  # a push without a participant
    [b] = intake.take("generic", Received([part("s-9", "customer", "http://pbx/c.wav", "r-c")], assemble_s=60))
    assert b.duplicate and b.call_id == a.call_id
    call = call_row(svc, a.call_id)
    assert call.recordings is None and call.recording_url == "http://pbx/whole.wav"
