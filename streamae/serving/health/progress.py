"""The daemon's state for health checks: one :class:`HealthSnapshot`, and the loop's counters.

Two sources fill a snapshot. ``probe.TransportProbe`` watches the transport from outside
(polls, commits, group membership, transport failures, stalls); ``Daemon.health()`` is the
loop's own view (backoff, pauses, held outputs, the model after a hot reload).
``health.DaemonHealth`` takes the probe's and :meth:`HealthSnapshot.merged` lays the
daemon's over it. Snapshots are frozen copies, safe to read from any thread (an HTTP
handler). Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from streamae.serving.publisher import Published
from streamae.serving.transport import Partition


@dataclass
class DaemonStats:
    readings: int = 0
    dead_letters: int = 0
    windows: int = 0  # windows whose scores were published
    replayed_windows: int = 0
    alerts_opened: int = 0
    alerts_closed: int = 0
    commits: int = 0
    batches: int = 0
    rewinds: int = 0  # exactly-once: aborted transactions, redone from the last commit

    def add(self, sent: Published) -> bool:
        """Count acknowledged outputs; whether any score or dead letter was among them."""
        self.windows += sent.scores
        self.alerts_opened += sent.alerts_opened
        self.alerts_closed += sent.alerts_closed
        self.dead_letters += sent.dead_letters
        return bool(sent.scores or sent.dead_letters)


# what only the probe knows: merged() never takes these from the daemon's report
_PROBE_ONLY = frozenset({"started_at", "subscribed", "broker_error", "stalled"})


@dataclass(frozen=True)
class HealthSnapshot:
    """The daemon's state as of one moment.

    ``ready``: the loop's own view (partitions assigned and no failing step being waited
    out, so the broker is reachable); ``/ready`` (``health.readiness``) checks more and also
    passes a member that stands by without partitions.
    """

    # both sources
    polled_at: float | None = None  # the last poll that returned, records or not (alive)
    committed_at: float | None = None  # the last offset commit (or transaction) that succeeded
    assigned: int = 0  # input partitions held
    in_backoff: bool = False  # a failed step (delivery, commit, positioning) is being waited out
    model_version: str | None = None  # None: no model loaded yet
    # the loop's own (Daemon.health())
    last_progress: float | None = None  # records processed or a commit made, whichever is later
    paused: bool = False  # consumption paused (backoff, or too many outputs held)
    lag: Mapping[Partition, int] = field(default_factory=dict)  # where known, ~1 s old at most
    held_outputs: int = 0  # outputs not sent yet, and sends not yet settled
    reloads: int = 0  # models switched to without a restart
    reload_failures: int = 0  # new bundles refused (the old model kept serving)
    # the probe's (TransportProbe.snapshot())
    started_at: float | None = None  # the process started; the checks count it as a poll
    subscribed: bool = False  # joined (or joining) the group
    broker_error: str | None = None  # the last transport failure, until an operation succeeds
    stalled: tuple[str, ...] = ()  # partitions with lag and no progress for STREAMAE_STALL_S

    @property
    def ready(self) -> bool:
        return self.assigned > 0 and not self.in_backoff

    @property
    def total_lag(self) -> int | None:
        return sum(self.lag.values()) if self.lag else None

    def merged(self, report: HealthSnapshot) -> HealthSnapshot:
        """This (the probe's) snapshot with the daemon's ``report`` laid over it: every field
        the report sets (not None) wins, except those only the probe knows (``started_at``,
        ``subscribed``, ``broker_error``, ``stalled``)."""
        changes = {
            f.name: value
            for f in fields(report)
            if f.name not in _PROBE_ONLY and (value := getattr(report, f.name)) is not None
        }
        return replace(self, **changes)
