"""Pure parts of privacy and retention: phone numbers masked in log text, the retention
and model-revision config, the redaction `callmood forget` applies to shared messages,
the lines `callmood purge` prints."""

from __future__ import annotations

import logging
import sys
from datetime import datetime

import pytest

from plugin import config as config_mod
from plugin.config import ConfigError, ModelConfig
from plugin.core.scrub import PhoneFilter, phones
from plugin.model.loading import hub_source
from plugin.store.forget import REDACTED, Redactor
from plugin.store.retention import Purged


@pytest.mark.parametrize("line, shown", [
    ("GET /rec/+8613812345678.wav", "GET /rec/+86138****5678.wav"),
    ("caller=%2B8613812345678&x=1", "caller=%2B86138****5678&x=1"),
    ("phone 13812345678.", "phone 138****5678."),
    ("+86 138 1234 5678", "+86 138 **** 5678"),
    ("(555) 123-4567", "(555) ***-4567"),
    ("cust-13812345678", "cust-138****5678"),
    ('HTTP 400: {"error": "customer +8613800000000 not found"}',
     'HTTP 400: {"error": "customer +86138****0000 not found"}'),
    ("2026-11-24 13800000000", "2026-11-24 138****0000"),
    # not phone numbers: times, ids, decimals, addresses, long numbers
    ("alerted at 2026-11-24 02:02Z", None),
    ("call 1234567 analyzed in 12.3456789s", None),
    ("score 0.1234567890123", None),
    ("127.0.0.1:54321", None),
    ("x=12345678901234567890", None),
])
def test_phone_numbers_in_free_text_are_masked(line, shown):
    assert phones(line) == (shown or line)


def test_the_log_filter_masks_messages_arguments_and_tracebacks():
    try:
        raise ValueError("no customer +8613812345678")
    except ValueError:
        record = logging.LogRecord("plugin.x", logging.ERROR, __file__, 1, "sending to %s failed",
                                   ("+8613812345678",), sys.exc_info())
    assert PhoneFilter().filter(record) is True
    out = logging.Formatter().format(record)
    # the message, the traceback's source line and the exception's text
    assert "+8613812345678" not in out and out.count("+86138****5678") == 3


def test_retention_defaults_and_limits():
    r = config_mod.load(None).retention
    assert (r.raw_events_days, r.segments_days, r.recordings_days, r.delivery_bodies_days,
            r.login_failures_days, r.interval_s) == (30, 180, 7, 30, 7, 3600)
    assert config_mod.from_dict({"retention": {"segments_days": None}}).retention.segments_days is None
    with pytest.raises(ConfigError, match="retention.raw_events_days: Input should be greater than or equal to 0"):
        config_mod.from_dict({"retention": {"raw_events_days": -1}})
    with pytest.raises(ConfigError, match="retention.segment_days: unknown key"):
        config_mod.from_dict({"retention": {"segment_days": 1}})


def test_the_default_model_is_pinned_on_each_hub():
    assert ModelConfig().revision == "v2.0.5"
    assert ModelConfig(hub="hf").revision == "6c303ba987b86b93193de93e34bb2b077a6bedc4"
    assert ModelConfig(name="iic/emotion2vec_plus_base").revision is None  # no pin known: the hub's newest
    assert ModelConfig(revision="master").revision == "master"


def test_what_funasr_is_handed(tmp_path):
    assert hub_source(ModelConfig()) == ("iic/emotion2vec_plus_large", {"model_revision": "v2.0.5"})
    assert hub_source(ModelConfig(revision="v2.0.4")) == ("iic/emotion2vec_plus_large", {"model_revision": "v2.0.4"})
    assert hub_source(ModelConfig(name="iic/other")) == ("iic/other", {})
    assert hub_source(ModelConfig(path=str(tmp_path))) == (str(tmp_path.resolve()), {})


def test_what_funasr_is_handed_for_the_speech_model(tmp_path, monkeypatch):
    """asr: the same rules: a pinned ModelScope revision is passed on; a pinned Hugging Face
    commit is downloaded here at that commit (FunASR would fetch the newest)."""
    import huggingface_hub

    from plugin.config import AsrConfig

    assert hub_source(AsrConfig()) == ("iic/SenseVoiceSmall", {})
    assert hub_source(AsrConfig(revision="v1")) == ("iic/SenseVoiceSmall", {"model_revision": "v1"})
    asked = {}
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, revision: asked.update(repo=repo_id, revision=revision) or str(tmp_path))
    assert hub_source(AsrConfig(hub="hf", name="FunAudioLLM/SenseVoiceSmall", revision="abc123")) == (str(tmp_path), {})
    assert asked == {"repo": "FunAudioLLM/SenseVoiceSmall", "revision": "abc123"}


def test_redaction_finds_whole_values_escaped_or_encoded():
    r = Redactor(["cust-4", "+8613811112222", None, "", "T/1"])
    body = {"markdown": {"content": "> cust\\-4 (\\+8613811112222) and cust-42 · T%2F1 · xT/1"},
            "url": "https://crm/customers/cust-4/tags", "list": ["cust-4", 7], "cust-4": True}
    assert r(body) == {"markdown": {"content": f"> {REDACTED} ({REDACTED}) and cust-42 · {REDACTED} · xT/1"},
                       "url": f"https://crm/customers/{REDACTED}/tags", "list": [REDACTED, 7], REDACTED: True}
    assert Redactor([None])("cust-4") == "cust-4"


def test_purge_lines():
    cutoff = datetime(2026, 10, 25, 2, 2)
    assert Purged("segments", 30, cutoff, 42, "segment(s)", calls=3).line() == (
        "segments: 42 segment(s) of 3 call(s) deleted (older than 30 days: before 2026-10-25 02:02Z)")
    assert Purged("recordings", 7, cutoff, 2, "file(s)", leftovers=1).line(dry_run=True) == (
        "recordings: 2 file(s) would be deleted (older than 7 days: before 2026-10-25 02:02Z); "
        "1 stale work folder(s) in tmp/")
    assert Purged("login failures", None, None).line() == (
        "login failures: kept forever (retention.login_failures_days is 0)")
