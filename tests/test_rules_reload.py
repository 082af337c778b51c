"""Safe reload: valid edits take effect without a restart, invalid ones are refused and shown."""

import logging
import shutil
from pathlib import Path

import pytest

from plugin.rules_watch import RulesHolder
from rules.source import RulesError
from tests.conftest import HERE, event, make_config
from tests.helpers import make_audio, wait_until

ALWAYS = (HERE / "rules" / "always.yaml").read_text(encoding="utf-8")


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "always.yaml").write_text(ALWAYS, encoding="utf-8")
    return d


def edit(rules_dir: Path, old: str, new: str) -> None:
    f = rules_dir / "always.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def rule_names(holder) -> list[str]:
    return [r.name for s in holder.current.scenarios for r in s.rules]


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_valid_invalid_and_reverted(rules_dir):
    holder = RulesHolder.load(rules_dir)
    first = holder.version
    assert holder.reload_if_changed() is False  # nothing changed

    edit(rules_dir, "any_customer_emotion", "renamed_rule")  # valid
    assert holder.reload_if_changed() is True
    assert rule_names(holder) == ["renamed_rule"] and holder.version != first
    good = holder.version

    logs = Records()
    logger = logging.getLogger("plugin.rules_watch")
    logger.addHandler(logs)
    try:
        edit(rules_dir, "min_confidence: 0.0", "min_confidence: 7")  # invalid
        assert holder.reload_if_changed() is False
        assert holder.reload_if_changed() is False  # the same bad edit is logged once
    finally:
        logger.removeHandler(logs)
    assert rule_names(holder) == ["renamed_rule"] and holder.version == good  # last good rules in force
    status = holder.status()
    assert status["status"] == "refused" and status["version"] == good
    [problem] = status["refused"]["problems"]
    assert "always.yaml:11: rules.0.when.min_confidence: Input should be less than or equal to 1" in problem
    refusals = [m for m in logs.messages if "refused" in m]
    assert len(refusals) == 1 and "min_confidence" in refusals[0] and f"version {good} stays in force" in refusals[0]

    edit(rules_dir, "min_confidence: 7", "min_confidence: 0.0")  # reverted: back to the rules in force
    assert holder.reload_if_changed() is False
    assert holder.status()["status"] == "ok" and "refused" not in holder.status()
    assert holder.version == good

    (rules_dir / "always.yaml").write_text("rules: [", encoding="utf-8")  # broken YAML
    holder.reload_if_changed()
    assert "invalid YAML" in holder.status()["refused"]["problems"][0]
    (rules_dir / "always.yaml").unlink()  # no scenario left at all
    holder.reload_if_changed()
    assert "no scenario files" in holder.status()["refused"]["problems"][0]
    assert rule_names(holder) == ["renamed_rule"]


def test_invalid_rules_refuse_to_start(rules_dir):
    edit(rules_dir, "emotions: [angry,", "emotions: [furious,")
    with pytest.raises(RulesError, match="always.yaml:10: rules.0.when.emotions: unknown emotion 'furious'"):
        RulesHolder.load(rules_dir)


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

    edit(rules_dir, "sink: wecom", "sink: wecomm")  # a sink the config does not have
    refused = wait_until(lambda: (h := health())["status"] == "refused" and h, timeout=10)
    assert "always.yaml:16: rules.0.actions.1.sink: unknown sink 'wecomm' (configured: crm, wecom)" \
        in refused["refused"]["problems"][0]
    h = svc.http.get(f"{svc.url}/health")
    assert h.status_code == 200  # the service works on with the last good rules
    r = svc.post_event(event("c-2", url))
    call = svc.wait_call(r.json()["call_id"])
    assert [a["rule"] for a in call["alerts"]] == ["renamed_rule"]
    assert {d["sink"] for d in call["alerts"][0]["deliveries"]} == {"crm", "wecom"}
    assert b"callmood_rules_reloads_total{outcome=\"refused\"}" in svc.http.get(f"{svc.url}/metrics").content

    edit(rules_dir, "sink: wecomm", "sink: wecom")
    wait_until(lambda: health()["status"] == "ok", timeout=10)
