"""What the loop reports about itself for health checks: :meth:`Daemon.health`.

The loop writes these fields from its own thread; any thread (an HTTP handler) reads a
:class:`HealthSnapshot`, a frozen copy. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class HealthSnapshot:
    """The daemon's state as of one moment.

    ``ready``: partitions assigned and no failing step being waited out (outputs
    acknowledged, commits answered, partitions positioned), so the broker is reachable.
    """

    polled_at: float | None  # the last poll returned (the loop is alive)
    last_progress: float | None  # records processed or a commit made, whichever is later
    committed_at: float | None  # the last offset commit (or transaction) that succeeded
    assigned: int  # partitions held
    in_backoff: bool  # a failed step (delivery, commit, positioning) is being waited out
    paused: bool  # consumption paused (backoff, or too many outputs held)
    model_version: str
    lag: Mapping[Partition, int] = field(default_factory=dict)  # where known, ~1 s old at most
    held_outputs: int = 0  # outputs waiting for a commit, and sends not yet settled
    reloads: int = 0  # models switched to without a restart
    reload_failures: int = 0  # new bundles refused (the old model kept serving)

    @property
    def ready(self) -> bool:
        return self.assigned > 0 and not self.in_backoff

    @property
    def total_lag(self) -> int | None:
        return sum(self.lag.values()) if self.lag else None
