"""The micro-batch: completed windows of every partition, scored together in one model call.

Windows wait until ``STREAMAE_BATCH__MAX_WINDOWS`` are pending, the oldest has waited
``STREAMAE_BATCH__MAX_WAIT_MS``, or the consumer has caught up (:func:`caught_up`: batches
grow only under a backlog, and a quiet stream's windows are scored at once); then
:func:`score` runs the model once (chunked at ``max_windows``) over all of them — except
for a bundle that normalises readings per key as it streams (``core/adapt.py``), whose
windows each partition scores with its own state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from streamae.core.scoring import ScoreBatch, Scorer
from streamae.core.windows import Windows
from streamae.serving.transport import Partition, Record


class MicroBatch:
    """Windows waiting to be scored."""

    def __init__(
        self, max_windows: int, max_wait_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_windows = max_windows
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._pending: list[Windows] = []
        self._n = 0
        self._since: float | None = None  # when the oldest pending window arrived

    def __len__(self) -> int:
        return self._n

    def add(self, windows: Windows) -> None:
        if len(windows):
            self._pending.append(windows)
            self._n += len(windows)
            if self._since is None:
                self._since = self._clock()

    def ready(self) -> bool:
        wait = self.seconds_until_ready()
        return wait is not None and wait <= 0

    def seconds_until_ready(self) -> float | None:
        """Seconds until the batch should be scored; None when nothing is pending."""
        if self._since is None:
            return None
        if self._n >= self.max_windows:
            return 0.0
        return self._since + self.max_wait_s - self._clock()

    def take(self) -> list[Windows]:
        pending, self._pending, self._n, self._since = self._pending, [], 0, None
        return pending

    def drop(self, partitions: Collection[Partition]) -> int:
        """Forget the pending windows of ``partitions``; how many there were."""
        kept = [w for w in self._pending if Partition(w.topic, w.partition) not in partitions]
        dropped = self._n - sum(map(len, kept))
        self._pending, self._n = kept, self._n - dropped
        if not kept:
            self._since = None
        return dropped


def score(scorer: Scorer, pending: list[Windows]) -> list[tuple[Windows, ScoreBatch | None]]:
    """Score all ``pending`` windows in one call; each :class:`Windows` with its own scores,
    or None for an adaptive bundle: a window's score depends on its key's earlier flags
    there, so each partition scores its own windows with its state (``Scorer.stream``)."""
    if not pending:
        return []
    if scorer.adaptive:
        return [(w, None) for w in pending]
    batch = scorer.score(np.concatenate([w.data for w in pending]))
    out: list[tuple[Windows, ScoreBatch | None]] = []
    lo = 0
    for windows in pending:
        hi = lo + len(windows)
        out.append((windows, ScoreBatch(batch.scores[lo:hi], batch.feature_errors[lo:hi])))
        lo = hi
    return out


def caught_up(
    polled: Mapping[Partition, Sequence[Record]], highwater: Callable[[Partition], int | None]
) -> bool:
    """Whether a poll reached the end of every partition it read, as the client last heard
    it (``Transport.highwater``: no request); unknown ends count as reached."""
    for p, records in polled.items():
        end = highwater(p)
        if end is not None and records[-1].offset + 1 < end:
            return False
    return True
