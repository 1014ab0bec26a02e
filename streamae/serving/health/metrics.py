"""Prometheus metrics of the daemon, served at ``/metrics`` on ``STREAMAE_METRICS_PORT``.

Every metric is defined here with its help text (``docs/operations.md`` lists them); the
loop, the publisher and the health server update them through the one-line functions
below, so a call site never needs to know a metric's labels or units. Times are seconds.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from streamae.serving.dead_letters import REASON_CODES as DEAD_LETTER_CODES
from streamae.serving.transport import Partition

# -- throughput (updated by the loop and the publisher) ------------------------------
READINGS = Counter("streamae_readings_total", "Readings decoded and windowed")
DEAD_LETTERS = Counter("streamae_dead_letters_total", "Records sent to the dead-letter topic")
UNSEEN = Counter(
    "streamae_unseen_categories_total",
    "Categorical values not in the bundle's vocabulary: read as 'other'",
    ["field"],
)
WINDOWS = Counter("streamae_windows_scored_total", "Windows scored and published")
REPLAYED = Counter("streamae_windows_replayed_total", "Windows rebuilt after a restart, not republished")
ALERTS = Counter("streamae_alert_events_total", "Alert events published", ["event"])
COMMITS = Counter("streamae_commits_total", "Offset commits after acknowledged outputs")
SHADOW_WINDOWS = Counter(
    "streamae_shadow_windows_total",
    "Windows scored by the shadow bundle, by whether the current and the shadow model flag them",
    ["current", "shadow"],
)
SHADOW_CORRELATION = Gauge(
    "streamae_shadow_score_correlation", "Correlation of current and shadow log scores, last micro-batch"
)
FLUSH_SECONDS = Histogram("streamae_flush_seconds", "Score one micro-batch and queue its outputs")
COMMIT_SECONDS = Histogram(
    "streamae_commit_seconds", "Publish outputs, wait for acknowledgements, save state, commit offsets"
)
KEYS = Gauge("streamae_keys", "Keys with window state")

#: Label values of dead letters per reason: the ``reason_code`` of each dead letter
#: (``dead_letters.REASON_CODES``), and ``other`` for a code that list does not know.
REASON_CODES = (*DEAD_LETTER_CODES, "other")
DEAD_LETTER_REASONS = Counter(
    "streamae_dead_letter_reasons_total",
    "Dead letters published, per reason code (sums to streamae_dead_letters_total)",
    ["reason"],
)
for _code in REASON_CODES:  # every series exists from the start: rate() and dashboards see 0
    DEAD_LETTER_REASONS.labels(_code)

DELIVERY_FAILURES = Counter(
    "streamae_delivery_failures_total",
    "Outputs the broker refused or did not acknowledge in time (nothing is committed after one)",
    ["topic"],
)

# -- position ------------------------------------------------------------------------
CONSUMER_LAG = Gauge(
    "streamae_consumer_lag",
    "Records between the partition's high watermark and the next offset this member reads",
    ["topic", "partition"],
)
ASSIGNED = Gauge("streamae_assigned_partitions", "Input partitions this member holds")
STALLED = Gauge(
    "streamae_stalled_partitions", "Assigned partitions with lag that yielded no record for STREAMAE_STALL_S"
)

# -- health (refreshed at each scrape by serving/health/server.py) -----------------------------
LIVE = Gauge("streamae_live", "1 while /healthz passes: the loop polled within STREAMAE_LIVENESS_S")
READY = Gauge("streamae_ready", "1 while /ready passes: subscribed, model loaded, broker reachable")
IN_BACKOFF = Gauge("streamae_in_backoff", "1 while the daemon waits out a broker or delivery failure")

# -- model -----------------------------------------------------------------------------
MODEL = Info("streamae_model", "The model bundle serving now")
MODEL_RELOADS = Counter(
    "streamae_model_reloads_total", "New bundles seen: ok (serving it) or refused (kept the old)", ["result"]
)
for _result in ("ok", "refused"):
    MODEL_RELOADS.labels(_result)

# -- latency -----------------------------------------------------------------------------
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFERENCE_SECONDS = Histogram(
    "streamae_inference_seconds", "ONNX Runtime time spent on one micro-batch", buckets=_LATENCY_BUCKETS
)
INFERENCE_WINDOWS = Counter("streamae_inference_windows_total", "Windows passed to ONNX Runtime")

_E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


class BulkHistogram(Collector):
    """A histogram that takes many observations in one numpy pass.

    ``prometheus_client.Histogram.observe`` costs about a microsecond, too much once per
    window at 100,000 windows a second; :meth:`observe_many` bins an array at once.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name, self.documentation = name, documentation
        self._bounds = np.array([*sorted(buckets), math.inf])
        self._counts = np.zeros(len(self._bounds), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, values: npt.ArrayLike) -> None:
        """Observe every finite value (negative ones count as 0)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        v = np.maximum(v[np.isfinite(v)], 0.0)
        if not v.size:
            return
        # bucket i holds values in (bound[i-1], bound[i]], as Histogram.observe counts them
        counts = np.bincount(np.searchsorted(self._bounds, v, side="left"), minlength=len(self._bounds))
        with self._lock:
            self._counts += counts
            self._sum += float(v.sum())

    def collect(self) -> Iterable[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts), self._sum
        family = HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=[(_le(b), float(c)) for b, c in zip(self._bounds, cumulative)],
            sum_value=total,
        )
        yield family

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation)]


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


END_TO_END_SECONDS = BulkHistogram(
    "streamae_end_to_end_seconds",
    "Event time of a window's last reading to the commit that covers its score (acknowledged; "
    "at-least-once the score was readable earlier, from its send)",
    _E2E_BUCKETS,
)

# -- ages computed at scrape time ---------------------------------------------------------
_started = time.monotonic()
_last_commit: float | None = None
_last_poll: float | None = None
SECONDS_SINCE_COMMIT = Gauge(
    "streamae_seconds_since_commit",
    "Seconds since the last offset commit (since start before the first; grows while idle too)",
)
SECONDS_SINCE_COMMIT.set_function(lambda: time.monotonic() - (_last_commit or _started))
SECONDS_SINCE_POLL = Gauge("streamae_seconds_since_poll", "Seconds since the loop last polled the broker")
SECONDS_SINCE_POLL.set_function(lambda: time.monotonic() - (_last_poll or _started))


# -- one-line updates for the call sites ---------------------------------------------------
def committed(at: float | None = None) -> None:
    """Offsets were committed (at ``time.monotonic()`` value ``at``, default now)."""
    global _last_commit
    _last_commit = time.monotonic() if at is None else at


def polled(at: float | None = None) -> None:
    """The loop polled the broker (at ``time.monotonic()`` value ``at``, default now)."""
    global _last_poll
    _last_poll = time.monotonic() if at is None else at


def consumer_lag(partition: Partition, lag: int) -> None:
    """Set the lag of one input partition."""
    CONSUMER_LAG.labels(partition.topic, str(partition.partition)).set(max(0, lag))


def forget_partitions(partitions: Collection[Partition]) -> None:
    """Drop the lag series of partitions this member no longer holds."""
    for p in partitions:
        with contextlib.suppress(KeyError):  # KeyError: it never had a lag
            CONSUMER_LAG.remove(p.topic, str(p.partition))


def delivery_failed(topic: str, n: int = 1) -> None:
    """``n`` outputs to ``topic`` were refused or not acknowledged."""
    DELIVERY_FAILURES.labels(topic).inc(n)


def dead_letter(reason_code: str, n: int = 1) -> None:
    """``n`` dead letters with ``reason_code`` were published (unknown codes count as other)."""
    DEAD_LETTER_REASONS.labels(reason_code if reason_code in REASON_CODES else "other").inc(n)


def dead_letters(by_reason: Mapping[str, int]) -> None:
    """Dead letters published, counted per reason code."""
    for code, n in by_reason.items():
        if n:
            dead_letter(code, n)


def model_loaded(version: str, variant: str = "") -> None:
    """The bundle now serving (at start and after each successful reload)."""
    MODEL.info({"version": version, "variant": variant})


def model_reloaded(ok: bool, version: str = "", variant: str = "") -> None:
    """A new bundle was seen: serving it (``ok``), or refused while the old one serves on."""
    MODEL_RELOADS.labels("ok" if ok else "refused").inc()
    if ok:
        model_loaded(version, variant)


def inference(seconds: float, windows: int) -> None:
    """ONNX Runtime spent ``seconds`` on the ``windows`` windows of one micro-batch."""
    INFERENCE_SECONDS.observe(seconds)
    INFERENCE_WINDOWS.inc(windows)


def end_to_end(event_times_s: npt.ArrayLike, acked_at_s: float | None = None) -> None:
    """Scores were acknowledged at wall-clock ``acked_at_s`` (default now) for windows whose
    last readings carry these event times (epoch seconds)."""
    now = time.time() if acked_at_s is None else acked_at_s
    END_TO_END_SECONDS.observe_many(now - np.asarray(event_times_s, dtype=np.float64))
