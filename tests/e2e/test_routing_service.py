"""Routing through the running service: webhook -> worker -> rules -> routing -> the
scheduler's flush -> the fake WeCom robot."""

from __future__ import annotations

from tests.conftest import ALWAYS, event, make_config
from tests.helpers import ROUTING, make_audio, wait_until


def test_through_the_running_service(tmp_path, model_dir, service_factory, recordings, wecom, crm):
    """Webhook -> worker -> rules -> routing -> scheduler flush -> fake WeCom robot; the
    second call of the same customer within the cooldown is suppressed."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "always.yaml").write_text(ALWAYS.replace("      - sink: wecom\n", ""), encoding="utf-8")
    (rules / "routing.yaml").write_text(ROUTING.replace("group_wait: 0s", "group_wait: 1s"), encoding="utf-8")
    cfg = make_config(tmp_path, model_dir, f"sqlite:///{tmp_path / 'svc.db'}", crm=crm, wecom=wecom,
                      rules={"path": str(rules)})
    svc = service_factory(cfg)
    url = recordings.serve_file("/r.wav", make_audio(tmp_path / "r", "wav_pcm", 16000, 1, 4.0))

    first = svc.post_event(event("route-1", url)).json()["call_id"]
    svc.wait_call(first)

    def sent():
        ns = svc.http.get(f"{svc.url}/api/notifications").json()["notifications"]
        return ns and ns[0]["delivery"] and ns[0]["delivery"]["status"] == "delivered" and ns
    [n] = wait_until(sent, 30)
    assert n["receiver"] == "supervisors" and n["group"] == "customer_id=cust-42" and n["status"] == "flushed"
    assert [a["call_id"] for a in n["alerts"]] == [first]
    [robot] = wecom.requests
    assert "<@supervisor01>" in robot.json()["markdown"]["content"]

    second = svc.post_event(event("route-2", url)).json()["call_id"]
    call = svc.wait_call(second)
    [alert] = call["alerts"]
    [r] = alert["routing"]
    assert r["outcome"] == "suppressed" and r["reason"].startswith("cooldown: cust-42 was alerted at ")
    assert [d["sink"] for d in alert["deliveries"]] == ["crm"]  # the rule's own action still runs
    first_call = svc.call(first)
    assert first_call["alerts"][0]["routing"][0]["notification_status"] == "delivered"
    page = svc.http.get(f"{svc.url}/calls/{second}", headers={"Accept-Language": "en"}).text
    assert "suppressed" in page and "cooldown: cust-42" in page
    assert len(wecom.requests) == 1
    one = svc.http.get(f"{svc.url}/api/notifications/{n['id']}").json()
    assert one["id"] == n["id"] and svc.http.get(f"{svc.url}/api/notifications/999").status_code == 404
