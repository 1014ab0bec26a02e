"""Per-key sliding windows over a stream of readings.

A key emits a window each time it has ``window`` readings and ``stride`` new ones since
its previous window. Only the last ``window - 1`` readings of each key are kept, so the
oldest kept offset tells the daemon where a restart must replay from to lose no window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streamae.core.readings import Readings


@dataclass(frozen=True)
class Windows:
    """``m`` windows ``(m, window, F)`` with the key, times and offsets of each."""

    keys: np.ndarray  # object array of str
    start_ts: np.ndarray  # float64, time of the first reading
    end_ts: np.ndarray  # float64, time of the last reading
    first_offset: np.ndarray  # int64
    last_offset: np.ndarray  # int64
    data: np.ndarray  # float32 (m, window, F)
    topic: str
    partition: int

    def __len__(self) -> int:
        return len(self.end_ts)

    def select(self, mask: np.ndarray) -> Windows:
        return Windows(
            self.keys[mask],
            self.start_ts[mask],
            self.end_ts[mask],
            self.first_offset[mask],
            self.last_offset[mask],
            self.data[mask],
            self.topic,
            self.partition,
        )


@dataclass
class _KeyTail:
    values: np.ndarray  # (<= window - 1, F)
    ts: np.ndarray
    offsets: np.ndarray
    seen: int  # readings of this key so far: fixes the stride phase
    last_ts: float = float("-inf")


class WindowStore:
    """Sliding windows for every key of one source partition."""

    def __init__(self, window: int, stride: int, n_features: int, idle_ttl_s: float = 0.0) -> None:
        if window < 1 or stride < 1:
            raise ValueError("window and stride must be >= 1")
        self.window = window
        self.stride = stride
        self.n_features = n_features
        self.idle_ttl_s = idle_ttl_s  # 0: keep partial windows forever
        self._tails: dict[str, _KeyTail] = {}

    def __len__(self) -> int:
        """Number of keys with state."""
        return len(self._tails)

    def oldest_offset(self) -> int | None:
        """Smallest offset still held for a future window, or None when nothing is held."""
        held = [int(t.offsets[0]) for t in self._tails.values() if len(t.offsets)]
        return min(held) if held else None

    def evict_idle(self) -> list[str]:
        """Forget keys with no reading for ``idle_ttl_s`` of event time, with their partial
        windows; returns those keys. A key that went quiet would otherwise hold its
        partition's committed offset back forever. "Now" is the median of the keys' latest
        times, so one reading with a bogus far-future timestamp cannot evict everyone."""
        if not self.idle_ttl_s or not self._tails:
            return []
        cutoff = float(np.median([t.last_ts for t in self._tails.values()])) - self.idle_ttl_s
        idle = [k for k, t in self._tails.items() if t.last_ts < cutoff]
        for key in idle:
            del self._tails[key]
        return idle

    def push(self, readings: Readings) -> Windows:
        """Add readings (stream order within each key) and return the windows they complete."""
        w, s = self.window, self.stride
        if len(readings) == 0:
            return self._empty(readings)
        uniq, inverse = np.unique(readings.keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
        parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for key, rows in zip(uniq, np.split(order, bounds)):
            tail = self._tails.get(key)
            if (
                tail is not None
                and self.idle_ttl_s
                and (readings.ts[rows[0]] - tail.last_ts > self.idle_ttl_s)
            ):
                tail = None  # back after a long silence: no window spans the gap
            if tail is None:
                empty_f = np.empty((0, self.n_features), dtype=np.float32)
                tail = _KeyTail(empty_f, np.empty(0), np.empty(0, dtype=np.int64), 0)
                self._tails[key] = tail
            values = np.concatenate([tail.values, readings.values[rows]])
            ts = np.concatenate([tail.ts, readings.ts[rows]])
            offsets = np.concatenate([tail.offsets, readings.offsets[rows]])
            before = tail.seen - len(tail.values)  # readings of this key dropped earlier
            seen = tail.seen + len(rows)
            # counts c (1-based, over the key's whole history) at which a window ends
            first_c = max(w, tail.seen + 1)
            first_c += (-(first_c - w)) % s
            ends = np.arange(first_c, seen + 1, s) - before - 1  # positions in `values`
            if len(ends):
                starts = ends - (w - 1)
                view = sliding_window_view(values, w, axis=0)  # (L - w + 1, F, w)
                parts.append(
                    (
                        key,
                        view[starts].transpose(0, 2, 1),
                        ts[starts],
                        ts[ends],
                        np.stack([offsets[starts], offsets[ends]]),
                    )
                )
            keep = max(0, len(values) - (w - 1))  # first row still needed by a future window
            tail.values, tail.ts, tail.offsets = values[keep:], ts[keep:], offsets[keep:]
            tail.seen = seen
            tail.last_ts = max(tail.last_ts, float(ts[-1]))
        if not parts:
            return self._empty(readings)
        counts = [len(p[2]) for p in parts]
        offs = np.concatenate([p[4] for p in parts], axis=1)
        return Windows(
            keys=np.repeat(np.array([p[0] for p in parts], dtype=object), counts),
            start_ts=np.concatenate([p[2] for p in parts]),
            end_ts=np.concatenate([p[3] for p in parts]),
            first_offset=offs[0],
            last_offset=offs[1],
            data=np.ascontiguousarray(np.concatenate([p[1] for p in parts]), dtype=np.float32),
            topic=readings.topic,
            partition=readings.partition,
        )

    def _empty(self, readings: Readings) -> Windows:
        return Windows(
            np.empty(0, dtype=object),
            np.empty(0),
            np.empty(0),
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.int64),
            np.empty((0, self.window, self.n_features), dtype=np.float32),
            readings.topic,
            readings.partition,
        )
