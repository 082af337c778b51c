"""Seeds a CallMood database with a contact center's months of history, for bench/dashboard.py.

Realistic shapes, made with bulk INSERTs (executemany, 5,000 rows a statement batch):

  customers  a third as many as calls, a few with Chinese ids; some call often (the
             picks follow a long tail), each has one phone number (E.164)
  calls      over the last 90 days, 150 agents, 10 queues; 5% without a customer id
             (unmatched), 1% failed; one finished analysis job each
  alerts     on ~80% as many calls as alerts (a quarter of those calls with a second rule);
             severities 20% critical, 50% warning, 30% info; some summaries quote the phone
  segments   for every alerted call: the 3 s windows of its speech on two channels (20-60 a channel)
  feedback   on 30% of the alerts (two thirds correct, one third false alarm)
  deliveries every alert to the CRM, half also to WeCom, 1% of them dead
  handling   a fifth of the flagged customers acknowledged, half of those assigned; their events
  users      a supervisor and a viewer (who the benchmark asks as), five assignees
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine

from plugin.store.tables import (AlertRow, Call, CustomerHandling, Delivery, Feedback, HandlingEvent, Job, Segment,
                                 User)

QUEUES = ("support", "billing", "售后", "vip", "sales", "returns", "tech", "retention", "complaints", "general")
RULES = (("angry_customer", "general"), ("sustained_negative", "general"), ("finance_escalation", "finance_complaint"),
         ("after_sales_anger", "after_sales"))
EMOTIONS = ("angry", "neutral", "sad", "happy", "fearful", "disgusted", "surprised", "other", "unknown")
ASSIGNEES = tuple(f"sup-{i}" for i in range(1, 6))
BATCH = 5000
DAYS = 90


def customer_id(n: int) -> str:
    return f"客户-{n:06d}" if n % 97 == 0 else f"C{n:06d}"


def phone(n: int) -> str:
    return f"+86138{n:08d}"


def seed(engine: Engine, calls: int, alerts: int, now: datetime, seed_value: int = 1,
         progress: Callable[[str], None] = lambda _m: None) -> dict:
    """Fill ``engine``'s (migrated, empty) database; the counts per table and facts the benchmark asks for."""
    rng = random.Random(seed_value)
    customers = max(1, calls // 3)
    weights = [1 / (i + 1) ** 0.7 for i in range(customers)]  # a long tail: some customers call often
    picks = rng.choices(range(customers), weights=weights, k=calls)
    counts: dict[str, int] = {}

    def put(table, rows: list[dict]) -> None:
        with engine.begin() as conn:
            for at in range(0, len(rows), BATCH):
                conn.execute(table.__table__.insert(), rows[at:at + BATCH])
        counts[table.__tablename__] = counts.get(table.__tablename__, 0) + len(rows)

    put(User, [{"name": n, "role": r, "origin": "local", "session_version": 0, "created_at": now}
               for n, r in (("bench-sup", "supervisor"), ("bench-viewer", "viewer"))
               + tuple((a, "supervisor") for a in ASSIGNEES)])

    progress(f"seeding {calls:,} calls ...")
    call_rows, job_rows = [], []
    for i in range(1, calls + 1):
        c = picks[i - 1]
        at = now - timedelta(seconds=rng.uniform(60, DAYS * 86400))
        duration = rng.uniform(60, 600)
        failed = rng.random() < 0.01
        call_rows.append({
            "id": i, "source": "generic", "external_id": f"bench-{i}",
            "recording_url": f"https://rec.example.com/2026/{i}.wav?sig=abc", "customer_id":
            None if rng.random() < 0.05 else customer_id(c), "customer_phone": phone(c),
            "agent_id": f"agent-{rng.randrange(150):03d}", "queue": rng.choice(QUEUES), "ticket_id": f"T-{i}",
            "channel_roles": {"0": "agent", "1": "customer"}, "recordings": None, "identity": "given",
            "event": {"call_id": f"bench-{i}", "customer_phone": phone(c), "queue": "support"},
            "status": "failed" if failed else "analyzed", "error": "fetch: HTTP 404" if failed else None,
            "received_at": at, "analyzed_at": None if failed else at + timedelta(seconds=duration / 5),
            "duration_s": round(duration, 1), "scenario": "general", "emotion": rng.choice(EMOTIONS[:3]),
            "confidence": round(rng.uniform(0.5, 0.99), 3),
            "summary": None if failed else {"audio_s": round(duration * 2, 1), "classified_s": round(duration, 1),
                                            "skipped_s": round(duration * 0.4, 1), "vad": "silero"},
            "timings": None if failed else {"fetch": 0.4, "decode": 0.8, "classify": 6.1}})
        job_rows.append({"id": i, "call_id": i, "kind": "analyze", "status": "failed" if failed else "done",
                         "attempts": 1, "run_after": at, "created_at": at, "finished_at": at + timedelta(minutes=2),
                         "last_error": "fetch: HTTP 404" if failed else None})
    put(Call, call_rows)
    put(Job, job_rows)

    progress(f"seeding {alerts:,} alerts with their segments, feedback and deliveries ...")
    with_customer = [r for r in call_rows if r["customer_id"] is not None and r["status"] == "analyzed"]
    alerted = rng.sample(with_customer, min(len(with_customer), -(-alerts * 4 // 5)))
    twice = set(rng.sample(range(len(alerted)), min(len(alerted), alerts - len(alerted))))  # a second rule fired
    alert_rows, feedback_rows, delivery_rows, segment_rows = [], [], [], []
    n_alert = 0
    for k, call in enumerate(alerted):
        first = rng.randrange(len(RULES))
        for rule, scenario in [RULES[first]] + ([RULES[(first + 1) % len(RULES)]] if k in twice else []):
            n_alert += 1
            created = call["analyzed_at"]
            cust, ph = call["customer_id"], call["customer_phone"]
            summary = (f"客户 {cust} 在 {call['queue']} 通话中持续生气 angry for {rng.randint(30, 90)}% of the call"
                       + (f" (来电 {ph})" if rng.random() < 0.1 else ""))
            alert_rows.append({
                "id": n_alert, "call_id": call["id"], "rule": rule, "scenario": scenario,
                "severity": rng.choices(("critical", "warning", "info"), (20, 50, 30))[0], "role": "customer",
                "emotions": ["angry"], "share": round(rng.uniform(0.3, 0.9), 2), "confidence": 0.8,
                "matched": [[3.0, 6.0], [12.0, 18.0]], "summary": summary, "customer_id": cust,
                "created_at": created, "labels": {"team": "cs"}, "details": {"share": 0.5, "windows": 12},
                "routing": []})
            if rng.random() < 0.3:
                verdict = "correct" if rng.random() < 2 / 3 else "false_alarm"
                feedback_rows.append({"id": len(feedback_rows) + 1, "alert_id": n_alert, "verdict": verdict,
                                      "by": rng.choice(ASSIGNEES), "note": None, "created_at": created,
                                      "updated_at": created})
            for sink in ("crm",) + (("wecom",) if rng.random() < 0.5 else ()):
                dead = rng.random() < 0.01
                delivery_rows.append({
                    "id": len(delivery_rows) + 1, "alert_id": n_alert, "sink": sink,
                    "payload": {"url": "https://crm.example.com/api/tags", "body": {"tag": "angry"}},
                    "status": "dead" if dead else "delivered", "attempts": 12 if dead else 1,
                    "next_attempt_at": created, "created_at": created,
                    "delivered_at": None if dead else created + timedelta(seconds=2),
                    "last_error": "HTTP 503" if dead else None, "last_status_code": 503 if dead else 200})
        per_channel = rng.randint(20, 60)
        for ch, role in ((0, "agent"), (1, "customer")):
            for w in range(per_channel):
                label = rng.choice(EMOTIONS[:3] if role == "customer" else EMOTIONS[1:4])
                segment_rows.append({"call_id": call["id"], "channel": ch, "role": role, "start": 3.0 * w,
                                     "end": 3.0 * w + 3, "label": label, "confidence": 0.8,
                                     "scores": {e: round(rng.random() / 9, 3) for e in EMOTIONS}})
        if len(segment_rows) > 100_000:
            put(Segment, segment_rows)
            segment_rows = []
    put(AlertRow, alert_rows)
    put(Feedback, feedback_rows)
    put(Delivery, delivery_rows)
    put(Segment, segment_rows)

    flagged = sorted({a["customer_id"] for a in alert_rows})
    handled = rng.sample(flagged, len(flagged) // 5)
    handling_rows, event_rows = [], []
    for n, cust in enumerate(handled, 1):
        at = now - timedelta(hours=rng.uniform(1, 72))
        assignee = rng.choice(ASSIGNEES) if n % 2 else None
        handling_rows.append({"id": n, "customer_id": cust, "acknowledged_by": "bench-sup", "acknowledged_at": at,
                              "assigned_to": assignee, "assigned_by": "bench-sup" if assignee else None,
                              "assigned_at": at if assignee else None, "note": None, "updated_at": at})
        event_rows.append({"customer_id": cust, "action": "acknowledge", "by": "bench-sup", "at": at})
        if assignee:
            event_rows.append({"customer_id": cust, "action": "assign", "by": "bench-sup", "assignee": assignee,
                               "at": at})
    put(CustomerHandling, handling_rows)
    put(HandlingEvent, event_rows)
    if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
        with engine.begin() as conn:
            for table in ("calls", "jobs", "alerts", "alert_feedback", "deliveries", "customer_handling"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    busiest = max(alerted, key=lambda c: c["id"])  # any alerted call: each has 40-120 segments
    return {"counts": counts, "flagged_customers": len(flagged), "alerted_call": busiest["id"],
            "queue": QUEUES[1], "phone": alerted[0]["customer_phone"]}
