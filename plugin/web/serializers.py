"""Stored rows as the JSON the API answers and the pages render; nothing else."""

from __future__ import annotations

from datetime import datetime

from plugin.flow.context import split_quotes
from plugin.store.deliveries import idempotency_key
from plugin.store.tables import AlertRow, Call, Delivery, Feedback, Notification


def iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="milliseconds") + "Z" if t else None


def delivery_json(d: Delivery) -> dict:
    payload = dict(d.payload)
    if "url" in payload:  # query strings often carry API keys
        payload["url"] = payload["url"].split("?", 1)[0] + ("?…" if "?" in payload["url"] else "")
    return {"id": d.id, "sink": d.sink, "status": d.status, "attempts": d.attempts,
            "last_status_code": d.last_status_code, "last_error": d.last_error,
            "next_attempt_at": iso(d.next_attempt_at) if d.status == "pending" else None,
            "delivered_at": iso(d.delivered_at), "created_at": iso(d.created_at),
            "alert_id": d.alert_id, "notification_id": d.notification_id, "report": d.dedupe_key,
            "note": d.note, "merged_into": d.merged_into, "requeued_at": iso(d.requeued_at),
            "idempotency_key": idempotency_key(d.id), "payload": payload}


def feedback_json(f: Feedback | None) -> dict | None:
    if f is None:
        return None
    return {"verdict": f.verdict, "by": f.by, "note": f.note, "updated_at": iso(f.updated_at)}


def alert_json(a: AlertRow) -> dict:
    # a.deliveries and a.feedback must be loaded with the alert (plugin/store/queries.py does).
    details, quotes = split_quotes(a.details)
    return {"id": a.id, "call_id": a.call_id, "rule": a.rule, "scenario": a.scenario,
            "severity": a.severity,
            "role": a.role, "emotions": a.emotions, "share": a.share, "confidence": a.confidence,
            "matched": a.matched, "summary": a.summary, "created_at": iso(a.created_at),
            "labels": a.labels or {}, "details": details,
            # What was said in the segments that fired: [{start, end, role, text}], [] without transcripts.
            "quotes": quotes,
            "deliveries": [delivery_json(d) for d in a.deliveries],
            "feedback": feedback_json(a.feedback),
            # What routing.yaml did with it: [{receiver, outcome, reason, notification_id, ...}]
            "routing": list(a.routing or [])}


def call_json(c: Call, segments: bool = True) -> dict:
    out = {
        "id": c.id, "source": c.source, "call_id": c.external_id, "status": c.status,
        "error": c.error, "customer_id": c.customer_id, "customer_phone": c.customer_phone,
        # How customer_id was found: given | matched | unmatched | lookup_failed (plugin/flow/identity.py)
        "identity": c.identity,
        "agent_id": c.agent_id, "ticket_id": c.ticket_id, "queue": c.queue,
        "scenario_hint": c.queue,  # the older name of queue, kept for API clients
        "scenario": c.scenario, "recording_url": c.recording_url,
        "channel_roles": c.channel_roles,
        # One file per participant (TCCC): whose, where, the vendor's id; None for one file.
        "recordings": [dict(r) for r in c.recordings] if c.recordings else None,
        "received_at": iso(c.received_at),
        "analyzed_at": iso(c.analyzed_at), "duration_s": c.duration_s,
        "emotion": c.emotion, "confidence": c.confidence, "summary": c.summary,
        "timings": c.timings,
        "jobs": [{"id": j.id, "status": j.status, "attempts": j.attempts,
                  "last_error": j.last_error} for j in c.jobs],
        # While an attempt failed and the next waits (or runs): why, and when; else None.
        "retry": retry_json(c),
        "alerts": [alert_json(a) for a in c.alerts],
    }
    if segments:
        # text: the words (numbers masked), "" where none were heard, None without transcripts;
        # tag_emotion and events: SenseVoice's own emotion tag and audio events. Not the
        # form keyword rules match (``normalized``): it says nothing ``text`` does not.
        out["segments"] = [{"start": s.start, "end": s.end, "channel": s.channel, "role": s.role,
                            "label": s.label, "confidence": s.confidence, "scores": s.scores,
                            "text": s.text, "language": s.language, "tag_emotion": s.tag_emotion,
                            "events": list(s.events or [])}
                           for s in c.segments]
    return out


def retry_json(c: Call) -> dict | None:
    """The call's latest job, while it is queued again (or running again) after a failed
    attempt: the status stays "received" (or "analyzed", for a re-run), so this says why
    it is not done and when it is tried next (None while that attempt runs)."""
    job = c.jobs[-1] if c.jobs else None
    if job is None or job.status not in ("queued", "running") or not job.last_error:
        return None
    return {"job_id": job.id, "attempts": job.attempts, "last_error": job.last_error,
            "next_attempt_at": iso(job.run_after) if job.status == "queued" else None,
            "running": job.status == "running"}


def notification_json(n: Notification) -> dict:
    # n.alerts and n.delivery must be loaded with the notification.
    return {"id": n.id, "receiver": n.receiver, "sink": n.sink, "group": n.group_key, "kind": n.kind,
            "status": n.status, "severity": n.severity, "created_at": iso(n.created_at),
            "flush_at": iso(n.flush_at), "flushed_at": iso(n.flushed_at),
            "alerts": [{"id": a.id, "call_id": a.call_id, "rule": a.rule, "severity": a.severity,
                        "customer_id": a.customer_id} for a in n.alerts],
            "delivery": delivery_json(n.delivery) if n.delivery is not None else None}


def flagged_json(row: dict) -> dict:
    h = row.get("handling")
    if h:  # who is handling the customer (plugin/store/handling.py), its times as ISO too
        h = {**h, **{k: iso(h[k]) for k in ("acknowledged_at", "assigned_at") if k in h}}
    return {**row, "last_alert_at": iso(row["last_alert_at"]), "handling": h}


def notification_ids(call: dict) -> set[int]:
    """The notifications the call's alerts were routed to."""
    return {r["notification_id"] for a in call.get("alerts", []) for r in a.get("routing") or []
            if r.get("notification_id")}


def with_notification_status(call: dict, found: dict[int, Notification]) -> dict:
    """Adds to each routing entry of the call's alerts the state of its notification's
    delivery ("open" while it waits for group_wait or the digest)."""
    for a in call.get("alerts", []):
        for r in a.get("routing") or []:
            n = found.get(r.get("notification_id"))
            if n is not None and r.get("outcome") != "suppressed":
                r["notification_status"] = n.delivery.status if n.delivery is not None else n.status
                r["flush_at"] = iso(n.flush_at)
    return call
