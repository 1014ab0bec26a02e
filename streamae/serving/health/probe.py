"""A transport wrapper that watches the loop from outside, for health checks and metrics.

:class:`TransportProbe` forwards every call to the transport the loop uses and notes polls,
seeks, commits, rebalances, transport failures and lag, so ``/healthz`` and ``/ready``
(``server.py``) need nothing from the loop itself: :meth:`TransportProbe.snapshot` fills the
probe's share of a ``progress.HealthSnapshot``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from streamae.serving.errors import CommitRefused, TransportError
from streamae.serving.health import metrics
from streamae.serving.health.progress import HealthSnapshot
from streamae.serving.transport import Offset, Partition, PartitionsCallback, Record, Transport

log = logging.getLogger(__name__)


class TransportProbe:
    """A :class:`~streamae.serving.transport.Transport` that forwards every call to the one
    it wraps and notes what health and metrics need: when polls return, which partitions
    are held, positions (polled and sought), commits (transactional ones too), transport
    failures, and each partition's lag (from ``highwater(partition)``, where the wrapped
    transport has it).

    Observation only: it changes no argument, result or exception.
    """

    def __init__(
        self, inner: Transport, stall_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self.stall_s = stall_s
        self.clock = clock
        self._lock = threading.Lock()  # rebalance callbacks may run on the client's thread
        self._polled_at: float | None = None
        self._committed_at: float | None = None
        self._subscribed = False
        self._held: set[Partition] = set()
        self._position: dict[Partition, int] = {}
        self._progressed_at: dict[Partition, float] = {}
        self._lag: dict[Partition, int] = {}
        self._stalled: set[Partition] = set()
        self._broker_error: str | None = None

    def __getattr__(self, name: str) -> Any:
        # everything not observed below (send, flush, pause, lag, and whatever a transport adds)
        return getattr(self._inner, name)

    # -- observed calls ---------------------------------------------------------------

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        def assigned(partitions: Collection[Partition]) -> None:
            now = self.clock()
            with self._lock:
                self._held.update(partitions)
                for p in partitions:  # the no-progress clock starts at assignment
                    self._progressed_at[p] = now
            on_assign(partitions)

        def revoked(partitions: Collection[Partition]) -> None:
            with self._lock:
                self._held.difference_update(partitions)
                for p in partitions:
                    self._position.pop(p, None)
                    self._progressed_at.pop(p, None)
                    self._lag.pop(p, None)
                    self._stalled.discard(p)
            metrics.forget_partitions(partitions)
            on_revoke(partitions)

        self._inner.subscribe(topics, assigned, revoked)
        self._subscribed = True

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        try:
            polled = self._inner.poll(timeout_s, max_records)
        except TransportError as exc:
            self._broker_error = str(exc)
            raise
        now = self.clock()
        metrics.polled()  # the gauges count real time, whatever clock the probe runs on
        with self._lock:
            self._polled_at = now
            for p, records in polled.items():
                if records:
                    self._position[p] = records[-1].offset + 1
                    self._progressed_at[p] = now
            self._update_lag(now)
        return polled

    def seek(self, partition: Partition, offset: int) -> None:
        self._inner.seek(partition, offset)
        with self._lock:
            self._position[partition] = offset

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        try:
            self._inner.commit(offsets)
        except CommitRefused:
            raise  # a rebalance, not a broker failure
        except TransportError as exc:
            self._broker_error = str(exc)
            raise
        self._committed(self.clock())

    def commit_transaction(self, offsets: Mapping[Partition, Offset]) -> None:
        # exactly-once: the offsets commit with the transaction, not through commit()
        self._inner.commit_transaction(offsets)
        self._committed(self.clock())

    def _committed(self, now: float) -> None:
        metrics.committed()
        self._committed_at, self._broker_error = now, None

    # -- what was seen ----------------------------------------------------------------

    def _update_lag(self, now: float) -> None:
        highwater: Callable[[Partition], int | None] | None = getattr(self._inner, "highwater", None)
        if highwater is None:
            return  # a transport without high watermarks: no lag, no stall detection
        for p in self._held:
            hw, pos = highwater(p), self._position.get(p)
            if hw is None or pos is None:
                continue
            lag = self._lag[p] = max(0, hw - pos)
            metrics.consumer_lag(p, lag)
            quiet = now - self._progressed_at.get(p, now)
            if lag > 0 and quiet > self.stall_s:
                if p not in self._stalled:
                    self._stalled.add(p)
                    log.warning(
                        "watchdog: %s is %d records behind and yielded nothing for %.0f s",
                        p,
                        lag,
                        quiet,
                        extra={"partition": str(p), "lag": lag},
                    )
            elif p in self._stalled:
                self._stalled.discard(p)
                log.info("watchdog: %s progresses again", p, extra={"partition": str(p)})
        metrics.STALLED.set(len(self._stalled))

    def observed_lag(self) -> dict[Partition, int]:
        """The last lag seen per held partition (empty without high watermarks). Not named
        ``lag``: that is the wrapped transport's own method, forwarded unchanged."""
        with self._lock:
            return dict(self._lag)

    def snapshot(self, started_at: float) -> HealthSnapshot:
        with self._lock:
            return HealthSnapshot(
                started_at=started_at,
                polled_at=self._polled_at,
                committed_at=self._committed_at,
                assigned=len(self._held),
                subscribed=self._subscribed,
                broker_error=self._broker_error,
                stalled=tuple(sorted(map(str, self._stalled))),
            )
