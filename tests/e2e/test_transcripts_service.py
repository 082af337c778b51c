"""End to end through real HTTP, with words: a helpdesk webhook, the recording downloaded,
SenseVoice (the hand-set stand-in, tests/asr_standin.py, through funasr.AutoModel) hears
the customer say 12315, a `says:` rule fires, the CRM gets a note quoting it and the
supervisors' WeCom message quotes the segment, escaped; the call's API and page show the
transcript, numbers masked."""

from __future__ import annotations

from tests.asr_standin import write_call
from tests.conftest import ROUTE_ALL, event, make_config
from tests.helpers import wait_until

KEYWORDS = """\
scenario: complaints
default: true
rules:
  - name: threatens_to_complain
    severity: critical
    when:
      says: [12315, 投诉, 律师, 曝光]   # any of them, in the customer's words
      role: customer
    actions:
      - sink: crm
        tag: complaint-threat
"""


def test_a_customer_who_says_12315_is_flagged_and_quoted(tmp_path, model_dir, db_url, service_factory,
                                                         recordings, crm, wecom, standin):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "complaints.yaml").write_text(KEYWORDS, encoding="utf-8")
    (rules / "routing.yaml").write_text(ROUTE_ALL, encoding="utf-8")
    cfg = make_config(tmp_path, model_dir, db_url, crm=crm, wecom=wecom, rules={"path": str(rules)},
                      asr={"enabled": True, "path": str(standin.path)})
    svc = service_factory(cfg)
    wait_until(lambda: svc.svc.model.speech.ready, 60)
    path = write_call(tmp_path / "call.wav", standin,
                      [["您好，请问有什么可以帮您？", None, "好的，我帮您查一下。"],
                       [None, "我要退款，不然我打12315。", "我的手机是13812345678"]],
                      codec=["-ar", "8000", "-c:a", "pcm_mulaw"])  # what a PBX records
    url = recordings.serve_file("/rec/c-words.wav", path)

    r = svc.post_event(event("c-words", url, channels={"0": "agent", "1": "customer"}))
    assert r.status_code == 202, r.text
    call = svc.wait_call(r.json()["call_id"])
    assert call["status"] == "analyzed", call
    said = sorted((s["start"], s["role"], s["text"]) for s in call["segments"])
    assert said == [(0.0, "agent", "您好，请问有什么可以帮您？"), (3.0, "customer", "我要退款，不然我打12315。"),
                    (6.0, "agent", "好的，我帮您查一下。"), (6.0, "customer", "我的手机是*******5678")]
    assert all(s["language"] == "zh" and s["tag_emotion"] == "angry" for s in call["segments"])
    assert "13812345678" not in str(call)

    [alert] = call["alerts"]
    assert alert["rule"] == "threatens_to_complain" and alert["matched"] == [[3.0, 6.0]]
    assert alert["quotes"] == [{"start": 3.0, "end": 6.0, "role": "customer", "text": "我要退款，不然我打12315。"}]

    svc.wait_deliveries(call["id"])
    [note] = crm.requests
    body = note.json()
    assert body["tags"] == ["complaint-threat"]
    assert body["quotes"] == [{"start": 3.0, "end": 6.0, "time": "00:03", "role": "customer",
                               "text": "我要退款，不然我打12315。"}]
    assert "00:03 customer: 我要退款，不然我打12315。" in body["note"]
    [robot] = wecom.requests
    content = robot.json()["markdown"]["content"]
    assert "00:03 客户: 我要退款，不然我打12315。" in content

    page = svc.http.get(f"{svc.url}/calls/{call['id']}", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200 and "我要退款，不然我打12315。" in page.text
    assert "13812345678" not in page.text
