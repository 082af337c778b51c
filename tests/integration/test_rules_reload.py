"""Safe reload: valid edits take effect without a restart, invalid ones are refused and shown."""

import logging

import pytest

from plugin.flow.rules_watch import RulesHolder
from rules.yamlfile import RulesError
from tests.conftest import edit


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
    logger = logging.getLogger("plugin.flow.rules_watch")
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

