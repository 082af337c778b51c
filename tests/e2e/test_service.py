"""End to end through real HTTP: helpdesk webhook -> worker -> CRM tag and WeCom alert."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.conftest import by_sink, event, make_config
from tests.helpers import Reply, make_audio, wait_until


def test_stereo_call_end_to_end(tmp_path, model_dir, db_url, service_factory, recordings, crm, wecom,
                                routed_rules):
    svc = service_factory(make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom, rules=routed_rules))
    url = recordings.serve_file("/rec/c-1.wav", make_audio(tmp_path / "c1", "wav_pcm", 8000, 2, 7.0))

    r = svc.post_event(event("c-1", url, channels={"0": "agent", "1": "customer"}))
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "accepted" and accepted["job_id"] >= 1

    call = svc.wait_call(accepted["call_id"])
    assert call["status"] == "analyzed", call
    assert call["jobs"] == [{"id": accepted["job_id"], "status": "done", "attempts": 1, "last_error": None}]
    # 7 s per channel in 3 s windows: 0-3, 3-6, and a 1 s tail, for each role.
    spans = sorted((s["role"], s["start"], s["end"]) for s in call["segments"])
    assert spans == [("agent", 0.0, 3.0), ("agent", 3.0, 6.0), ("agent", 6.0, 7.0),
                     ("customer", 0.0, 3.0), ("customer", 3.0, 6.0), ("customer", 6.0, 7.0)]
    for s in call["segments"]:
        assert set(s["scores"]) == {"angry", "disgusted", "fearful", "happy", "neutral", "other",
                                    "sad", "surprised", "unknown"}
        assert s["label"] == max(s["scores"], key=s["scores"].get)
        assert abs(sum(s["scores"].values()) - 1) < 1e-3
    assert set(call["summary"]["roles"]) == {"agent", "customer"}
    assert call["duration_s"] == pytest.approx(7.0, abs=0.05)
    assert {"fetch", "decode", "segment_and_infer", "judge", "store_and_plan"} <= set(call["timings"])

    [alert] = call["alerts"]
    assert alert["rule"] == "any_customer_emotion" and alert["role"] == "customer"
    assert alert["share"] == 1.0 and len(alert["matched"]) == 3

    call = svc.wait_deliveries(accepted["call_id"])
    # The rule's action writes the CRM; the supervisors' message comes through routing.
    assert [(d["sink"], d["status"], d["attempts"]) for d in call["alerts"][0]["deliveries"]] == [
        ("crm", "delivered", 1)]
    assert [(d["sink"], d["status"], d["attempts"]) for d in call["routed"].values()] == [("wecom", "delivered", 1)]
    assert "robot-key" not in str(call) and "crm-token" not in str(call)  # secrets stay in the config

    [tag] = crm.requests
    assert tag.method == "POST" and tag.path == "/api/customers/cust-42/tags"
    assert tag.headers["Authorization"] == "Bearer crm-token" and tag.headers["X-Call"] == "c-1"
    assert tag.headers["Idempotency-Key"].startswith("callmood-delivery-")
    body = tag.json()
    assert body["tags"] == ["emotion-seen"] and body["customer_id"] == "cust-42"
    assert body["ticket_id"] == "T-1001" and f"/calls/{accepted['call_id']}?k=" in body["link"]
    # The signed link opens the call's page without a login (a supervisor's phone in WeCom).
    link_page = requests.get(body["link"].replace("http://127.0.0.1:8080", svc.url), timeout=5)
    assert link_page.status_code == 200 and "cust-42" in link_page.text

    [robot] = wecom.requests
    assert robot.path == "/cgi-bin/webhook/send?key=robot-key"
    msg = robot.json()
    assert msg["msgtype"] == "markdown" and set(msg) == {"msgtype", "markdown"}
    content = msg["markdown"]["content"]
    assert len(content.encode()) <= 4096
    for needle in ("cust-42", "agent-7", "00:00–00:03", "<@supervisor01>", f"/calls/{accepted['call_id']}"):
        assert needle in content

    # support teams see the customer red-flagged
    [flag] = svc.http.get(f"{svc.url}/api/flagged").json()["customers"]
    assert flag["customer_id"] == "cust-42" and flag["severity"] == "critical"
    page = svc.http.get(f"{svc.url}/calls/{accepted['call_id']}", headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "delivered" in page.text


@pytest.mark.parametrize("fmt,rate,channels", [
    ("wav_pcm", 16000, 1), ("wav_pcm", 44100, 2), ("wav_mulaw", 8000, 1), ("mp3", 44100, 1),
    ("mp3", 16000, 2), ("ogg_opus", 16000, 1), ("ogg_opus", 48000, 2), ("m4a_aac", 44100, 2),
    ("m4a_aac", 8000, 1), ("amr", 8000, 1),
])
def test_recording_formats(tmp_path, model_dir, sqlite_url, service_factory, recordings, fmt, rate, channels):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url))
    path = make_audio(tmp_path / "rec", fmt, rate, channels, 6.5)
    url = recordings.serve_file("/r/" + path.name, path)
    roles = {"0": "agent", "1": "customer"} if channels == 2 else None
    r = svc.post_event(event(f"fmt-{fmt}-{rate}-{channels}", url, channels=roles))
    assert r.status_code == 202
    call = svc.wait_call(r.json()["call_id"])
    assert call["status"] == "analyzed", call["error"]
    assert call["duration_s"] == pytest.approx(6.5, abs=0.15)  # codecs pad a few ms
    expected_roles = {"agent", "customer"} if channels == 2 else {"mixed"}
    assert {s["role"] for s in call["segments"]} == expected_roles
    assert len(call["segments"]) == 2 * len(expected_roles)  # 0-3, 3-6; the 0.5 s tail is dropped
    assert call["summary"]["channels_in_file"] == channels


def test_stereo_without_layout_is_mixed(tmp_path, model_dir, sqlite_url, service_factory, recordings):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url))
    url = recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 2, 4.0))
    call = svc.wait_call(svc.post_event(event("mix-1", url)).json()["call_id"])
    assert {s["role"] for s in call["segments"]} == {"mixed"}
    assert {s["channel"] for s in call["segments"]} == {-1}


def test_duplicate_events_make_one_job(tmp_path, model_dir, db_url, service_factory, recordings, crm, wecom,
                                      routed_rules):
    svc = service_factory(make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom, rules=routed_rules))
    url = recordings.serve_file("/d.wav", make_audio(tmp_path / "d", "wav_pcm", 16000, 1, 4.0))
    body = event("dup-1", url)
    answers: list = []

    def send():
        answers.append(svc.post_event(body))
    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status_code == 202 for a in answers)
    assert len({(a.json()["call_id"], a.json()["job_id"]) for a in answers}) == 1
    assert sorted(a.json()["status"] for a in answers).count("accepted") == 1

    call_id = answers[0].json()["call_id"]
    svc.wait_deliveries(call_id)
    again = svc.post_event(body)
    assert again.status_code == 202 and again.json()["status"] == "duplicate"
    listed = svc.http.get(f"{svc.url}/api/calls").json()["calls"]
    assert len(listed) == 1 and len(listed[0]["jobs"]) == 1
    assert len(crm.requests) == 1 and len(wecom.requests) == 1


def test_sink_fails_twice_then_succeeds(tmp_path, model_dir, db_url, service_factory, recordings, crm, wecom,
                                       routed_rules):
    crm.routes["/api/customers/cust-42/tags"] = [Reply(500, "boom"), Reply(503, "busy"), Reply(201, {"id": 1})]
    wecom.routes["/cgi-bin/webhook/send"] = [
        Reply(200, {"errcode": -1, "errmsg": "system busy"}),
        Reply(502, "bad gateway"),
        Reply(200, {"errcode": 0, "errmsg": "ok"}),
    ]
    svc = service_factory(make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom, rules=routed_rules))
    url = recordings.serve_file("/f.wav", make_audio(tmp_path / "f", "wav_pcm", 16000, 1, 4.0))
    call_id = svc.post_event(event("retry-1", url)).json()["call_id"]
    call = svc.wait_deliveries(call_id)
    got = {**by_sink(call), **call["routed"]}
    assert got["crm"]["status"] == "delivered" and got["crm"]["attempts"] == 3
    assert got["wecom"]["status"] == "delivered" and got["wecom"]["attempts"] == 3
    assert got["crm"]["last_status_code"] == 201 and got["crm"]["last_error"] is None
    # Every retry sends the same body with the same idempotency key.
    assert len({r.body for r in crm.requests}) == 1
    assert len({r.headers["Idempotency-Key"] for r in crm.requests}) == 1
    assert len(wecom.requests) == 3


def test_sink_that_never_succeeds_is_visibly_dead(tmp_path, model_dir, sqlite_url, service_factory, recordings,
                                                 crm, wecom, routed_rules):
    wecom.routes["/cgi-bin/webhook/send"] = Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom, rules=routed_rules))
    url = recordings.serve_file("/x.wav", make_audio(tmp_path / "x", "wav_pcm", 16000, 1, 4.0))
    call_id = svc.post_event(event("dead-1", url)).json()["call_id"]
    call = svc.wait_deliveries(call_id)
    got = {**by_sink(call), **call["routed"]}
    assert got["wecom"]["status"] == "dead" and got["wecom"]["attempts"] == 4
    assert "93000" in got["wecom"]["last_error"]
    assert got["crm"]["status"] == "delivered"
    health = svc.http.get(f"{svc.url}/health").json()
    assert health["detail"]["queue"]["deliveries_dead"] == 1


@pytest.mark.parametrize("content,reason", [
    (b"this is not audio at all" * 100, "cannot decode"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot decode"),
])
def test_corrupt_audio_fails_cleanly(tmp_path, model_dir, sqlite_url, service_factory, recordings, crm, wecom,
                                     content, reason):
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom))
    recordings.routes["/bad.wav"] = Reply(200, content)
    call_id = svc.post_event(event("bad-1", recordings.url + "/bad.wav")).json()["call_id"]
    call = svc.wait_call(call_id)
    assert call["status"] == "failed" and reason in call["error"]
    assert call["jobs"][0]["status"] == "failed" and call["jobs"][0]["attempts"] == 1
    assert call["segments"] == [] and call["alerts"] == []
    assert crm.requests == [] and wecom.requests == []


def test_hostile_url_is_refused(tmp_path, model_dir, sqlite_url, service_factory, recordings):
    cfg = make_config(tmp_path, model_dir, sqlite_url, fetch={"allow_networks": []})
    svc = service_factory(cfg)
    recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 3.0))
    call_id = svc.post_event(event("ssrf-1", recordings.url + "/r.wav")).json()["call_id"]
    call = svc.wait_call(call_id)
    assert call["status"] == "failed" and "non-public address 127.0.0.1" in call["error"]
    assert recordings.requests == []


def test_recording_server_down_is_retried(tmp_path, model_dir, sqlite_url, service_factory, recordings):
    path = make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 4.0)
    recordings.routes["/later.wav"] = [Reply(503, "try later"), Reply(200, path.read_bytes())]
    svc = service_factory(make_config(tmp_path, model_dir, sqlite_url))
    call_id = svc.post_event(event("later-1", recordings.url + "/later.wav")).json()["call_id"]
    call = svc.wait_call(call_id)
    assert call["status"] == "analyzed"
    assert call["jobs"][0]["attempts"] == 2


def test_offline_start_without_model_then_resumes(tmp_path, model_dir, db_url, service_factory, recordings):
    import shutil

    missing = tmp_path / "model-not-yet"
    cfg = make_config(tmp_path, missing, db_url)
    svc = service_factory(cfg, load_model=False)
    health = wait_until(lambda: (h := svc.http.get(f"{svc.url}/health")).status_code == 503
                        and "not a directory" in h.json()["message"] and h.json())
    assert str(missing) in health["message"] and health["status"] == "error"

    url = recordings.serve_file("/w.wav", make_audio(tmp_path / "w", "wav_pcm", 16000, 1, 4.0))
    r = svc.post_event(event("wait-1", url))
    assert r.status_code == 202
    assert svc.call(r.json()["call_id"])["jobs"][0]["status"] == "queued"
    predict = svc.http.post(f"{svc.url}/predict", files={"file": ("a.wav", b"x")})
    assert predict.status_code == 503

    shutil.copytree(model_dir, missing)  # the operator puts the model in place
    call = svc.wait_call(r.json()["call_id"])
    assert call["status"] == "analyzed"
    assert svc.http.get(f"{svc.url}/health").json()["status"] == "success"


def test_accepted_event_survives_restart(tmp_path, model_dir, db_url, service_factory, recordings):
    cfg = make_config(tmp_path, model_dir, db_url)
    url = recordings.serve_file("/s.wav", make_audio(tmp_path / "s", "wav_pcm", 16000, 1, 4.0))
    first = service_factory(cfg, start_runtime=False)  # receiver only; "crashes" before any work
    call_id = first.post_event(event("restart-1", url)).json()["call_id"]
    first.close()

    second = service_factory(cfg)
    assert second.wait_call(call_id)["status"] == "analyzed"


def test_job_of_a_dead_worker_is_taken_over(tmp_path, model_dir, db_url, service_factory, recordings, clock):
    cfg = make_config(tmp_path, model_dir, db_url, worker={"lease_s": 30, "poll_interval_s": 0.05})
    url = recordings.serve_file("/l.wav", make_audio(tmp_path / "l", "wav_pcm", 16000, 1, 4.0))
    svc = service_factory(cfg, start_runtime=False, clock=clock)
    call_id = svc.post_event(event("lease-1", url)).json()["call_id"]
    # A worker claims the job and dies without finishing it; its lease runs out.
    assert svc.svc.jobs.claim("doomed-worker") is not None
    svc.start_runtime()
    assert svc.call(call_id)["jobs"][0]["status"] == "running"  # nobody takes a job under lease
    clock.advance(seconds=31)
    call = svc.wait_call(call_id)
    assert call["status"] == "analyzed" and call["jobs"][0]["attempts"] == 2
