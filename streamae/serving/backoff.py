"""Exponential backoff: how long to wait before trying a failed step again.

The first wait is ``STREAMAE_KAFKA__RETRY_BACKOFF_MS``; each further failure doubles it up
to ``STREAMAE_KAFKA__RETRY_BACKOFF_MAX_MS``; a success starts over. The waits are not slept
here: the loop keeps polling (membership, rebalances, ``stop()``) and asks whether the wait
is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    """Failures since the last success, and when the next attempt may come."""

    def __init__(self, initial_s: float, max_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self.initial_s, self.max_s = initial_s, max_s
        self._clock = clock
        self.failures = 0
        self._until = 0.0

    @property
    def active(self) -> bool:
        """Whether the last attempt failed (until a success)."""
        return self.failures > 0

    def fail(self) -> float:
        """Note a failure; returns the wait before the next attempt."""
        delay = min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 60))
        self.failures += 1
        self._until = self._clock() + delay
        return delay

    def succeed(self) -> None:
        self.failures = 0
        self._until = 0.0

    def remaining(self) -> float:
        """Seconds until the next attempt may come (0 when it may come now)."""
        return max(0.0, self._until - self._clock()) if self.failures else 0.0

    def waiting(self) -> bool:
        return self.remaining() > 0
