"""Prometheus metrics of the daemon (served on ``STREAMAE_METRICS_PORT`` when set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

READINGS = Counter("streamae_readings_total", "Readings decoded and windowed")
DEAD_LETTERS = Counter("streamae_dead_letters_total", "Records sent to the dead-letter topic")
WINDOWS = Counter("streamae_windows_scored_total", "Windows scored and published")
REPLAYED = Counter("streamae_windows_replayed_total", "Windows rebuilt after a restart, not republished")
ALERTS = Counter("streamae_alert_events_total", "Alert events published", ["event"])
COMMITS = Counter("streamae_commits_total", "Offset commits after acknowledged outputs")
FLUSH_SECONDS = Histogram("streamae_flush_seconds", "Score one micro-batch and queue its outputs")
COMMIT_SECONDS = Histogram(
    "streamae_commit_seconds", "Publish outputs, wait for acknowledgements, save state, commit offsets"
)
KEYS = Gauge("streamae_keys", "Keys with window state")
