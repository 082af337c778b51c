"""One analysis job: fetch -> decode -> segment -> infer -> judge -> plan deliveries.

Every stage is idempotent: re-running a job (after a crash, a lease expiry or a
retry) rewrites the same segment rows and adds no second alert or delivery.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from plugin import metrics, notify, queue
from plugin.analysis import analyze_audio
from plugin.audio.decode import DecodeError, decode
from plugin.audio.fetch import FetchError, fetch
from plugin.data import Alert
from plugin.inference import ModelUnavailable
from plugin.models import AlertRow, Call, Delivery, Job, Segment, utcnow
from plugin.services import Services, call_context
from rules.engine import alert_context, evaluate

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the job over (our lease expired): stop and change nothing."""


def run_job(svc: Services, job_id: int, owner: str) -> None:
    """Process a claimed job and record its outcome."""
    cfg = svc.config.worker
    with svc.sessions() as s:
        job = s.get(Job, job_id)
        call_id, attempts = job.call_id, job.attempts
    try:
        analyze_call(svc, call_id, job_id=job_id, owner=owner)
    except LeaseLost:
        log.warning("job %s (call %s): lease lost to another worker; abandoning this attempt", job_id, call_id)
    except DecodeError as exc:  # corrupt or not audio: retrying will not help
        _fail(svc, job_id, owner, call_id, str(exc), retry=False)
    except FetchError as exc:
        retry = exc.retryable and attempts < cfg.max_attempts
        _fail(svc, job_id, owner, call_id, str(exc), retry=retry, attempts=attempts)
    except ModelUnavailable as exc:
        # Not the call's fault: put it back until the model is there again.
        with svc.sessions.begin() as s:
            queue.fail_job(s, job_id, owner, str(exc), retry_in_s=svc.config.model.retry_interval_s)
    except Exception as exc:
        log.exception("job %s (call %s) failed", job_id, call_id)
        retry = attempts < cfg.max_attempts
        _fail(svc, job_id, owner, call_id, f"{exc.__class__.__name__}: {exc}", retry=retry, attempts=attempts)


def _fail(svc: Services, job_id: int, owner: str, call_id: int, error: str, retry: bool,
          attempts: int = 1) -> None:
    delay = queue.backoff(attempts, svc.config.worker.retry_backoff_s, 3600) if retry else None
    with svc.sessions.begin() as s:  # the job and its call fail together
        status = queue.fail_job(s, job_id, owner, error, delay)
    if status is None:
        return  # our lease expired and another worker has the job now
    log.warning("call %s: %s (%s)", call_id, error, "will retry" if status == "queued" else "failed")
    metrics.CALLS.labels(outcome="retry" if status == "queued" else "failed").inc()


def analyze_call(svc: Services, call_id: int, job_id: int | None = None, owner: str | None = None) -> None:
    cfg = svc.config
    model = svc.model.get()  # raises ModelUnavailable before any work is done
    timings: dict[str, float] = {}
    with svc.sessions() as s:
        call = s.get(Call, call_id)
        ctx = call_context(call)  # what rules and templates see of the call
        url, roles = call.recording_url, call.channel_roles
        received_at = call.received_at
    channel_roles = {int(k): v for k, v in roles.items()} if roles else None

    keep_lease = _lease_keeper(svc, job_id, owner)
    workdir = Path(tempfile.mkdtemp(prefix=f"call{call_id}-", dir=_tmp_dir(cfg.data_dir)))
    try:
        t = time.perf_counter()
        fetched = fetch(url, workdir / "recording", cfg.fetch)
        timings["fetch"] = time.perf_counter() - t
        keep_lease(force=True)

        t = time.perf_counter()
        audio = decode(fetched.path, workdir / "decoded.wav", cfg.audio.max_duration_s)
        timings["decode"] = time.perf_counter() - t
        if cfg.worker.keep_recordings:
            keep = Path(cfg.data_dir) / "recordings"
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(fetched.path, keep / f"call-{call_id}")
        fetched.path.unlink()
        keep_lease(force=True)

        t = time.perf_counter()
        analysis, notes = analyze_audio(audio, model, cfg.audio, channel_roles,
                                        on_progress=lambda done, total: keep_lease())
        timings["segment_and_infer"] = time.perf_counter() - t
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    t = time.perf_counter()
    ctx["duration_s"] = analysis.duration
    rules = svc.rules  # one version for judging and routing, whatever a reload does meanwhile
    scenario, alerts = evaluate(rules, analysis, ctx)
    timings["judge"] = time.perf_counter() - t

    # Results, verdict, alerts, deliveries and the job's completion commit together,
    # and only while we still hold the job.
    t = time.perf_counter()
    with svc.sessions.begin() as s:
        if job_id is not None and not queue.finish_job(s, job_id, owner):
            raise LeaseLost(job_id)
        s.execute(delete(Segment).where(Segment.call_id == call_id))
        s.add_all(Segment(call_id=call_id, channel=r.channel, role=r.role, start=r.start, end=r.end,
                          label=r.label, confidence=r.confidence, scores=r.scores)
                  for r in analysis.segments)
        call = s.get(Call, call_id)
        call.status, call.error = "analyzed", None
        call.analyzed_at = utcnow()
        call.duration_s = round(analysis.duration, 3)
        call.scenario = scenario.scenario if scenario else None
        call.emotion, call.confidence = analysis.emotion, analysis.confidence
        call.summary = {**analysis.summary(), **notes}
        planned = [(alert, plan_alert(svc, s, call, ctx, alert)) for alert in alerts]
        # Supervisor notifications (routing.yaml: grouping, cooldown, quiet hours).
        notify.route_alerts(svc, s, call, ctx, planned, svc.clock(), rules)
        timings["store_and_plan"] = time.perf_counter() - t
        timings["received_to_analyzed"] = (call.analyzed_at - received_at).total_seconds()
        call.timings = {k: round(v, 4) for k, v in timings.items()}
    metrics.CALLS.labels(outcome="analyzed").inc()
    metrics.AUDIO_SECONDS.labels(outcome="classified").inc(notes["classified_s"])
    metrics.AUDIO_SECONDS.labels(outcome="skipped").inc(notes["skipped_s"])
    for stage, seconds in timings.items():
        metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
    log.info("call %s analyzed: %s segments, emotion=%s, %d alert(s), scenario=%s",
             call_id, len(analysis.segments), analysis.emotion, len(alerts), call.scenario)


def plan_alert(svc: Services, s: Session, call: Call, ctx: dict, alert: Alert) -> AlertRow:
    """Store the alert (once per call and rule) and one delivery per action (once per sink)."""
    row = s.execute(select(AlertRow).where(AlertRow.call_id == call.id,
                                           AlertRow.rule == alert.rule)).scalar()
    if row is None:
        row = AlertRow(call_id=call.id, rule=alert.rule, scenario=alert.scenario,
                       severity=alert.severity, role=alert.role, emotions=alert.emotions,
                       share=alert.share, confidence=alert.confidence,
                       matched=[list(m) for m in alert.matched], summary=alert.summary,
                       customer_id=call.customer_id, labels=dict(alert.labels),
                       details=dict(alert.details), routing=[], created_at=svc.clock())
        s.add(row)
        s.flush()
    have = {d.sink for d in s.execute(select(Delivery).where(Delivery.alert_id == row.id)).scalars()}
    for action in alert.actions:
        sink = svc.sinks.get(action.sink)
        if sink is None:
            log.warning("alert %s: sink %r is not configured; action skipped", row.id, action.sink)
            continue
        if action.sink in have:
            continue
        try:
            payload = sink.render({"call": ctx, "alert": alert_context(alert), "action": action.params,
                                   "link": svc.call_link(call.id)})
        except Exception as exc:  # a bad template must not throw the call's analysis away
            log.error("alert %s: cannot render the %s payload: %s", row.id, action.sink, exc)
            s.add(Delivery(alert_id=row.id, sink=action.sink, payload={}, status="dead",
                           last_error=f"cannot render payload: {exc.__class__.__name__}: {exc}"[:2000]))
        else:
            s.add(Delivery(alert_id=row.id, sink=action.sink, payload=payload))
        have.add(action.sink)
    return row


def _lease_keeper(svc: Services, job_id: int | None, owner: str | None):
    """Renews the job's lease during a long call; raises LeaseLost once another worker has it."""
    lease_s = svc.config.worker.lease_s
    last = [time.monotonic()]

    def keep(force: bool = False) -> None:
        if job_id is None or not (force or time.monotonic() - last[0] > lease_s / 3):
            return
        if not queue.renew_job(svc.sessions, job_id, owner, lease_s):
            raise LeaseLost(job_id)
        last[0] = time.monotonic()
    return keep


def _tmp_dir(data_dir: str) -> str:
    p = Path(data_dir) / "tmp"
    p.mkdir(parents=True, exist_ok=True)
    return str(p)
