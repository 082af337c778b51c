"""Safe reload in a running service: a valid edit takes effect with no restart, an
invalid one is refused, shown in /health, and the service works on with the last good rules."""


from tests.conftest import edit, event, make_config
from tests.helpers import make_audio, wait_until


def test_running_service_reloads_and_shows_refusal(tmp_path, model_dir, sqlite_url, service_factory,
                                                   recordings, crm, wecom, rules_dir):
    cfg = make_config(tmp_path, model_dir, sqlite_url, crm=crm, wecom=wecom,
                      rules={"path": str(rules_dir), "reload_interval_s": 0.05})
    svc = service_factory(cfg)
    url = recordings.serve_file("/a.wav", make_audio(tmp_path / "a", "wav_pcm", 16000, 1, 4.0))
    health = lambda: svc.http.get(f"{svc.url}/health").json()["detail"]["rules"]  # noqa: E731
    before = health()
    assert before["status"] == "ok" and before["scenarios"] == ["everything"]

    edit(rules_dir, "any_customer_emotion", "renamed_rule")
    wait_until(lambda: health()["version"] != before["version"], timeout=10)
    r = svc.post_event(event("c-1", url))
    call = svc.wait_call(r.json()["call_id"])
    assert [a["rule"] for a in call["alerts"]] == ["renamed_rule"]  # no restart needed

    edit(rules_dir, "sink: crm", "sink: crmm")  # a sink the config does not have
    refused = wait_until(lambda: (h := health())["status"] == "refused" and h, timeout=10)
    assert "always.yaml:14: rules.0.actions.0.sink: unknown sink 'crmm' (configured: crm, wecom)" \
        in refused["refused"]["problems"][0]
    h = svc.http.get(f"{svc.url}/health")
    assert h.status_code == 200  # the service works on with the last good rules
    r = svc.post_event(event("c-2", url))
    call = svc.wait_call(r.json()["call_id"])
    assert [a["rule"] for a in call["alerts"]] == ["renamed_rule"]
    assert {d["sink"] for d in call["alerts"][0]["deliveries"]} == {"crm"}
    assert b"callmood_rules_reloads_total{outcome=\"refused\"}" in svc.http.get(f"{svc.url}/metrics").content

    edit(rules_dir, "sink: crmm", "sink: crm")
    wait_until(lambda: health()["status"] == "ok", timeout=10)
