"""The pages' words for the codes the data holds: emotions, severities, statuses, speaker
roles, verdicts, SenseVoice's audio events and languages. The code stays what it is in the
database, the API, CSV, logs and WeCom; a page shows its name in the page's language (the
message catalogue, plugin/web/i18n.py).

The emotions' Chinese in the catalogue is FunASR's own (plugin/model/modeldir.LABEL_TOKENS:
生气, 开心 ...), the names the model's labels carry (tests/unit/test_page_terms.py holds them
to it). A code this module does not know is shown as it is: it is data."""

from __future__ import annotations

from flask import Flask
from flask_babel import lazy_gettext as _l

EMOTIONS = {
    "angry": _l("angry"), "disgusted": _l("disgusted"), "fearful": _l("fearful"), "happy": _l("happy"),
    "neutral": _l("neutral"), "other": _l("other"), "sad": _l("sad"), "surprised": _l("surprised"),
    "unknown": _l("unknown"),
}
SEVERITIES = {"critical": _l("critical"), "warning": _l("warning"), "info": _l("info"),
              "false_alarm": _l("false alarm")}
# Calls (and "retrying", which the pages derive), jobs, deliveries, notifications: one map, no clashes.
STATUSES = {
    "received": _l("received"), "analyzing": _l("analyzing"), "retrying": _l("retrying"),
    "analyzed": _l("analyzed"), "failed": _l("failed"),
    "queued": _l("queued"), "running": _l("running"), "done": _l("done"),
    "pending": _l("pending"), "sending": _l("sending"), "delivered": _l("delivered"), "dead": _l("dead"),
    "open": _l("open"), "flushed": _l("flushed"),
}
ROLES = {"customer": _l("customer"), "agent": _l("agent"), "mixed": _l("mixed")}
ACCOUNT_ROLES = {"viewer": _l("viewer"), "supervisor": _l("supervisor"), "admin": _l("admin")}
VERDICTS = {"correct": _l("Correct"), "false_alarm": _l("False alarm")}
# What routing did with an alert (plugin/flow/notify/stages.py).
OUTCOMES = {"skipped": _l("skipped"), "grouped": _l("grouped"), "suppressed": _l("suppressed"),
            "digest": _l("digest"), "notified": _l("notified")}
KINDS = {"daily": _l("Daily"), "weekly": _l("Weekly")}  # report periods
# SenseVoice's audio events and languages (plugin/core/data.EVENTS, plugin/core/transcript.LANGUAGES).
EVENTS = {"speech": _l("speech"), "bgm": _l("background music"), "applause": _l("applause"),
          "laughter": _l("laughter"), "cry": _l("crying"), "sneeze": _l("sneeze"), "breath": _l("breathing"),
          "cough": _l("cough")}
LANGUAGES = {"zh": _l("Mandarin"), "en": _l("English"), "yue": _l("Cantonese"), "ja": _l("Japanese"),
             "ko": _l("Korean"), "nospeech": _l("no speech")}


def name(names: dict, code: object) -> str:
    """``code``'s name from ``names`` in the page's language; an unknown code as it is
    (outside a request: the English)."""
    if code is None:
        return ""
    found = names.get(code) if isinstance(code, str) else None
    return str(found) if found is not None else str(code)


# Jinja filters: {{ s.label | emotion_name }}, {{ c.state | status_name }} ...
FILTERS = {
    "emotion_name": lambda code: name(EMOTIONS, code),
    "severity_name": lambda code: name(SEVERITIES, code),
    "status_name": lambda code: name(STATUSES, code),
    "role_name": lambda code: name(ROLES, code),
    "account_role_name": lambda code: name(ACCOUNT_ROLES, code),
    "verdict_name": lambda code: name(VERDICTS, code),
    "outcome_name": lambda code: name(OUTCOMES, code),
    "kind_name": lambda code: name(KINDS, code),
    "event_name": lambda code: name(EVENTS, code),
    "language_name": lambda code: name(LANGUAGES, code),
}


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(FILTERS)
