"""The upload page: the tutorial's demo page, made useful.

    GET  /upload          the page: drop or choose recordings, optional channel roles and scenario
    POST /upload/analyze  one recording (multipart ``file``, ``channels``, ``scenario``) -> its
                          result: emotion, segments, the timeline's boxes, the scenario's verdict,
                          and its rows of the page's CSV

A viewer or above (the gate's default), as for /predict: whoever may read the calls may
try a recording. Each file takes its turn in /predict's own pool (plugin/web/predict_pool.py,
429/503 with Retry-After beyond it), is heard as /predict hears it (upload_audio.py) and is
kept nowhere. ``server.predict_enabled: false`` turns the page off with /predict (404).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from plugin.core.data import Alert, CallAnalysis
from plugin.flow.context import call_context
from plugin.flow.report.render import csv_cell
from plugin.flow.segment_rows import TRANSCRIPT_COLUMNS, transcript_cells
from plugin.store.tables import Call
from plugin.web import terms, timeline
from plugin.web.predict import POOL
from plugin.web.predict_pool import Busy
from plugin.web.services import get_services
from plugin.web.upload_audio import HeardUpload, UploadRefused, hear_upload
from rules.engine import RuleSet, Scenario, evaluate

bp = Blueprint("upload", __name__)

# Which channel is whose, as `callmood analyze --roles` and the import sidecar's `channels`
# say it; "mixed" analyses every channel together (a mono file always is).
LAYOUTS: dict[str, dict[int, str] | None] = {
    "mixed": None,
    "agent-customer": {0: "agent", 1: "customer"},
    "customer-agent": {0: "customer", 1: "agent"},
}
# The page's CSV: one row per segment, the columns of `callmood analyze --csv` and the scenario.
CSV_COLUMNS = ["file", "start", "end", "channel", "role", "emotion", "confidence", "call_emotion",
               "call_confidence", "scenario", "alerts", "model", *TRANSCRIPT_COLUMNS]
NAME_MAX = 255  # characters of a file name shown and written back
MODEL_WAIT_S = 10  # Retry-After while the model loads: the page tries again by itself


@bp.before_request
def _switched_on() -> None:
    if not get_services().config.server.predict_enabled:
        abort(404, "the upload page is turned off with /predict (server.predict_enabled)")


@bp.app_context_processor
def _nav() -> dict[str, Any]:
    # base.html shows the page's link only where the page is on.
    return {"upload_page_on": get_services().config.server.predict_enabled}


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    """The page's script reads every answer of /upload/analyze as JSON (a CSRF refusal and a
    413 included); the page itself gets the app's HTML error pages."""
    if request.endpoint == "upload.analyze":
        return jsonify(error=exc.description, status=exc.code), exc.code
    return exc


@bp.get("/upload")
def page():
    svc = get_services()
    rules = svc.rules
    limit = svc.config.server.max_upload_bytes
    return render_template(
        "upload.html", scenarios=sorted(rules.scenarios, key=lambda s: s.scenario), max_size=_size(limit),
        colors=timeline.COLORS,
        setup={"max_bytes": limit, "max_size": _size(limit), "csv_header": _csv_text([CSV_COLUMNS]),
               "emotions": _names(terms.EMOTIONS), "roles": _names(terms.ROLES),
               "severities": _names(terms.SEVERITIES), "events": _names(terms.EVENTS), "messages": _messages()})


@bp.post("/upload/analyze")
def analyze():
    try:
        with current_app.extensions[POOL].turn():  # the tutorial's /predict queue: one pool for both
            return _analyze()
    except Busy as exc:
        return jsonify(error=str(exc)), exc.status, {"Retry-After": str(exc.retry_after_s)}


def _analyze():
    layout = request.form.get("channels") or "mixed"
    if layout not in LAYOUTS:
        return jsonify(error=f"channels must be one of: {', '.join(LAYOUTS)}"), 400
    rules = get_services().rules  # one version for the whole file, whatever a reload does meanwhile
    scenario = None
    wanted = (request.form.get("scenario") or "").strip()
    if wanted:
        scenario = next((s for s in rules.scenarios if s.scenario == wanted), None)
        if scenario is None:
            return jsonify(error=f"unknown scenario {wanted[:64]!r} (the rules in force have: "
                                 f"{', '.join(sorted(s.scenario for s in rules.scenarios))})"), 400
    upload = request.files.get("file")
    try:
        heard = hear_upload(upload, LAYOUTS[layout], words=True, rules=rules)
    except UploadRefused as exc:
        headers = {"Retry-After": str(MODEL_WAIT_S)} if exc.status == 503 else {}
        return jsonify(error=str(exc)), exc.status, headers
    return jsonify(_result(_shown_name(upload.filename), layout, heard, rules, scenario))


def _result(name: str, layout: str, heard: HeardUpload, rules: RuleSet, scenario: Scenario | None) -> dict:
    analysis, notes = heard.analysis, heard.notes
    alerts: list[Alert] = []
    if scenario is not None:
        _, alerts = evaluate(rules, analysis, _call(name, analysis), scenario=scenario)
    segments = [s.to_dict() for s in analysis.segments]
    drawn = timeline.lanes({"duration_s": analysis.duration, "segments": segments,
                            "alerts": [{"matched": a.matched} for a in alerts]})
    return {
        "filename": name,
        "emotion": analysis.emotion,
        "confidence": round(analysis.confidence, 4),
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration": round(analysis.duration, 3),
        "channels": layout,
        "tracks": notes["tracks"],
        "layout_note": notes.get("layout_note"),  # e.g. roles given for a mono file: analysed mixed
        "transcript_note": notes.get("transcript"),  # e.g. asr is on and its model is not loaded
        "skipped_silence_s": notes["skipped_s"],
        # What was said (text None: no speech recognizer ran); the page sets it as text only.
        "segments": [{"start": s.start, "end": s.end, "channel": s.channel, "role": s.role, "emotion": s.label,
                      "confidence": round(s.confidence, 4), "text": s.text, "language": s.language,
                      "tag_emotion": s.tag_emotion, "events": list(s.events)} for s in analysis.segments],
        "scenario": None if scenario is None else {
            "name": scenario.scenario, "description": scenario.description,
            "alerts": [{"rule": a.rule, "severity": a.severity, "summary": a.summary, "role": a.role,
                        "emotions": a.emotions, "share": a.share, "confidence": a.confidence,
                        "matched": a.matched, "quotes": a.quotes} for a in alerts]},
        "timeline": {"duration": drawn["duration"], "width": drawn["width"], "lanes": drawn["lanes"]},
        "audio": heard.audio,
        "model": heard.model,
        "csv": _csv_text(_csv_rows(name, analysis, scenario, alerts, heard.model)),
    }


def _call(name: str, analysis: CallAnalysis) -> dict:
    # What rules and their templates see of an unsaved call of this file (as `callmood analyze`).
    return call_context(Call(source="upload", external_id=name, duration_s=analysis.duration, event={}))


def _csv_rows(name: str, analysis: CallAnalysis, scenario: Scenario | None, alerts: list[Alert],
              model: dict) -> list[list[Any]]:
    fired = ";".join(a.rule for a in alerts)
    made_by = "trial model, random weights" if model.get("trial") else ""
    return [[name, s.start, s.end, s.channel, s.role, s.label, s.confidence, analysis.emotion, analysis.confidence,
             scenario.scenario if scenario else "", fired, made_by, *transcript_cells(s)] for s in analysis.segments]


def _csv_text(rows: list[list[Any]]) -> str:
    """Rows as CSV text; a cell a spreadsheet would run as a formula gets a ' first
    (the reports' csv_cell). The page adds the BOM once, before the header."""
    out = io.StringIO()
    w = csv.writer(out)
    for row in rows:
        w.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def _shown_name(filename: str) -> str:
    # The name as the browser sent it, without control characters, at most NAME_MAX characters.
    return re.sub(r"[\x00-\x1f\x7f]", "?", filename)[:NAME_MAX]


def _size(n: int) -> str:
    return f"{n / 1048576:g} MB" if n >= 1048576 else f"{n / 1024:.0f} KB"


def _names(names: dict) -> dict[str, str]:
    return {code: terms.name(names, code) for code in names}


def _messages() -> dict[str, str]:
    """What the page's script says, in the page's language (the script holds no text)."""
    return {
        "queued": _("queued"), "analysing": _("analysing"), "done": _("done"), "error": _("error"),
        "waiting": _("server busy, trying again in %(s)s s"), "too_big": _("larger than the upload limit"),
        "network": _("network error: the server could not be reached"),
        "no_scenario": _("no scenario chosen"), "no_alert": _("no rule fired"),
        "scenario": _("Scenario"), "verdict": _("Verdict"), "duration": _("Duration"),
        "segments": _("Segments"), "start": _("Start"), "end": _("End"), "role": _("Role"),
        "emotion": _("Emotion"), "confidence": _("Confidence"), "timeline": _("Emotion timeline"),
        "trial": _("Analysed by a trial model with random weights: the emotions are meaningless."),
        "narrowband": _("narrowband (telephone band: emotion2vec hears less of it)"),
        "partial": _("partial: the file holds less than its header declares"),
        "used": _("used by a rule"), "status_of": _("%(name)s: %(status)s"),
        "words": _("Words"), "no_words": _("(no words)"),
    }
