"""Prometheus metrics, served at /metrics."""

from prometheus_client import Counter, Histogram, Info

WEBHOOKS = Counter("callmood_webhooks_total", "Webhooks received", ["source", "outcome"])
CALLS = Counter("callmood_calls_total", "Calls processed by workers", ["outcome"])
STAGE_SECONDS = Histogram("callmood_stage_seconds", "Seconds per pipeline stage", ["stage"],
                          buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1200))
DELIVERIES = Counter("callmood_deliveries_total", "Delivery attempts by outcome", ["sink", "outcome"])
BATCH_WINDOWS = Histogram("callmood_inference_batch_windows", "Windows per model forward",
                          ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))  # emotion | speech
AUDIO_SECONDS = Counter("callmood_audio_seconds_total", "Seconds of track audio by what became of it",
                        ["outcome"])  # classified | skipped
RULES_RELOADS = Counter("callmood_rules_reloads_total", "Rule file changes seen by this process",
                        ["outcome"])  # loaded | refused
RULES_VERSION_INFO = Info("callmood_rules", "The rules in force (hash of their files)")
WEBHOOK_IGNORED = Counter("callmood_webhook_ignored_total",
                          "Well-formed webhook items that are not a finished recording (acknowledged, not stored)",
                          ["source", "reason"])
SYNCED = Counter("callmood_synced_total", "Recordings found by reconciling a source (callmood sync)",
                 ["source", "outcome"])
