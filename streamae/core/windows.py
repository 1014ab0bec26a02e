"""Per-key sliding windows over a stream of readings, held in preallocated arrays.

A key emits a window each time it has ``window`` readings and ``stride`` new ones since
its previous window. Only the last ``window - 1`` readings of each key are kept, in one
slot of preallocated arrays (a key → slot map finds it), so a batch costs the same whether
the partition has 20 keys or 100,000: each step is a numpy operation over the batch, not a
Python loop over keys. The oldest kept offset tells the daemon where a restart must replay
from to lose no window.

A reading more than ``idle_ttl_s`` of event time after its key's previous reading starts
the key afresh (no window spans a silence), and an idle key is forgotten. Either way the
readings of the abandoned partial window that no window covered are not dropped silently:
they come back from :meth:`WindowStore.drain_discarded` with the reason, for the caller
to dead-letter.

A store given an ``expand`` (``core/encoding.py``) holds a reading's inputs and hands out
windows of the model's features: ``expand(inputs (m, N, n_features), times (m, N))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.core.groups import group_ranks
from streamae.core.readings import Readings
from streamae.core.segments import ByKey, Segments, uncovered, window_ends

_INITIAL_SLOTS = 64
#: The cause of a reading discarded because its key was forgotten: not tied to any offset.
FORGOTTEN = np.iinfo(np.int64).max


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


@dataclass(frozen=True)
class Discarded:
    """Readings no window will cover (their key fell silent or was forgotten before their
    window completed), with one reason per reading, and the offset of the reading whose
    silence cut each one off (``FORGOTTEN`` when its key was forgotten): a replay of the
    stream from after that offset does not discard it again."""

    readings: Readings
    reasons: list[str]
    causes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.readings)


@dataclass(frozen=True, slots=True)
class _Rows:
    """A batch's segments laid out one after another (see :class:`Segments`)."""

    values: np.ndarray  # float32 (n, F)
    ts: np.ndarray
    offsets: np.ndarray
    index: np.ndarray  # position in a list record, or -1
    place: np.ndarray  # a new row's position in the batch (held rows: unset)


class WindowStore:
    """Sliding windows for every key of one source partition."""

    def __init__(
        self,
        window: int,
        stride: int,
        n_features: int,
        idle_ttl_s: float = 0.0,
        expand: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        n_out: int | None = None,
    ) -> None:
        if window < 1 or stride < 1:
            raise ValueError("window and stride must be >= 1")
        self.window = window
        self.stride = stride
        self.n_features = n_features
        self.expand = expand
        self.n_out = n_features if n_out is None else n_out  # features per window reading
        self.idle_ttl_s = idle_ttl_s  # 0: keep partial windows forever
        self._slot_of: dict[str, int] = {}
        self._free: list[int] = []
        self._discarded: list[Discarded] = []
        depth = max(window - 1, 1)
        self._values = np.zeros((0, depth, n_features), np.float32)
        self._ts = np.zeros((0, depth), np.float64)
        self._offsets = np.zeros((0, depth), np.int64)
        self._index = np.zeros((0, depth), np.int32)  # position in a list record, or -1
        self._held = np.zeros(0, np.int64)  # readings held (<= window - 1)
        self._seen = np.zeros(0, np.int64)  # readings since the key (re)started: the stride phase
        self._last_ts = np.zeros(0, np.float64)  # the key's latest event time (a running max)
        self._key = np.zeros(0, object)
        self._grow(_INITIAL_SLOTS)

    def __len__(self) -> int:
        """Number of keys with state."""
        return len(self._slot_of)

    def _grow(self, slots: int) -> None:
        have = len(self._held)

        def more(a: np.ndarray, fill: object) -> np.ndarray:
            return np.concatenate([a, np.full((slots - have, *a.shape[1:]), fill, a.dtype)])

        self._values, self._ts, self._offsets, self._index = (
            more(self._values, 0),
            more(self._ts, 0),
            more(self._offsets, 0),
            more(self._index, -1),
        )
        self._held, self._seen = more(self._held, 0), more(self._seen, 0)
        self._last_ts, self._key = more(self._last_ts, -np.inf), more(self._key, None)
        self._free.extend(range(slots - 1, have - 1, -1))

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each (distinct) key, allocating slots for new keys."""
        found = list(map(self._slot_of.get, keys.tolist()))
        new = [k for k, s in zip(keys.tolist(), found) if s is None]
        if new:
            if len(new) > len(self._free):
                self._grow(max(2 * len(self._held), len(self._held) + len(new)))
            for key in new:
                self._slot_of[key] = slot = self._free.pop()
                self._key[slot] = key
            found = list(map(self._slot_of.get, keys.tolist()))
        return np.array(found, dtype=np.int64)

    def oldest_offset(self) -> int | None:
        """Smallest offset still held for a future window, or None when nothing is held."""
        held = self._held > 0
        return int(self._offsets[held, 0].min()) if held.any() else None

    def drain_discarded(self) -> list[Discarded]:
        """Readings abandoned since the last call (see :class:`Discarded`)."""
        out, self._discarded = self._discarded, []
        return out

    def evict_idle(self) -> list[str]:
        """Forget keys with no reading for ``idle_ttl_s`` of event time, with their partial
        windows (see :meth:`drain_discarded`); returns those keys. A key that went quiet would
        otherwise hold its partition's committed offset back forever. "Now" is the median of
        the keys' latest times, so one bogus far-future timestamp cannot evict everyone."""
        if not self.idle_ttl_s or not self._slot_of:
            return []
        live = np.fromiter(self._slot_of.values(), np.int64, len(self._slot_of))
        now = float(np.median(self._last_ts[live]))
        idle = live[self._last_ts[live] < now - self.idle_ttl_s]
        if not len(idle):
            return []
        reason = f"its key sent nothing for more than {self.idle_ttl_s:g} s of event time and was forgotten"
        self._abandon(idle, [reason] * len(idle), np.full(len(idle), FORGOTTEN, np.int64))
        keys: list[str] = self._key[idle].tolist()
        for key in keys:
            del self._slot_of[key]
        self._free.extend(idle.tolist())
        self._key[idle] = None
        self._last_ts[idle] = -np.inf
        return keys

    def _abandon(self, slots: np.ndarray, reasons: list[str], causes: np.ndarray) -> None:
        """Drop what ``slots`` hold; keep their never-covered readings as discarded."""
        u = uncovered(self._seen[slots], self._held[slots], self.window, self.stride)
        if u.any():
            group, rank = group_ranks(u)
            sl, col = slots[group], (self._held[slots] - u)[group] + rank
            reason = [reasons[g] for g in group.tolist()]
            self._discard(
                Readings(
                    self._key[sl],
                    self._ts[sl, col],
                    self._values[sl, col],
                    self._offsets[sl, col],
                    "",
                    0,
                    self._index[sl, col],
                ),
                reason,
                causes[group],
            )
        self._held[slots] = 0
        self._seen[slots] = 0

    def _discard(self, r: Readings, reasons: list[str], causes: np.ndarray) -> None:
        order = np.lexsort((r.indices(), r.offsets))
        readings = Readings(
            r.keys[order], r.ts[order], r.values[order], r.offsets[order], "", 0, r.indices()[order]
        )
        self._discarded.append(Discarded(readings, [reasons[i] for i in order.tolist()], causes[order]))

    def _silence(self, seconds: float) -> str:
        return (
            f"its key then sent nothing for {seconds:.6g} s of event time (more than "
            f"STREAMAE_WINDOWS__IDLE_TTL_S={self.idle_ttl_s:g}), so its window never completed"
        )

    def push(self, readings: Readings) -> Windows:
        """Add readings (stream order within each key) and return the windows they complete,
        in the stream order of their last reading."""
        if len(readings) == 0:
            return self._empty(readings)
        codes, uniques = pd.factorize(readings.keys)
        slot_of_code = self._slots(np.asarray(uniques, dtype=object))
        by = ByKey.of(codes, slot_of_code, readings.ts, self._last_ts)
        silence = by.ts - by.prev
        gap = silence > self.idle_ttl_s if self.idle_ttl_s else np.zeros(len(by.ts), bool)
        reasons = [self._silence(d) for d in silence[gap].tolist()]
        reason_at = np.cumsum(gap) - 1  # a gap reading's index in `reasons` and `cause`
        cause = readings.offsets[by.order][gap]
        restart = by.first & gap  # what the slot holds ended at a silence before this batch
        if restart.any():
            at = reason_at[restart]
            self._abandon(by.slot[restart], [reasons[i] for i in at.tolist()], cause[at])
        s = Segments.of(by, gap, self._held, self._seen)
        rows = self._lay_out(readings, by, s)
        if s.cut.any():
            why = reason_at[s.starts[1:][s.cut[:-1]]]  # the silence that ends each cut segment
            self._discard_cut(s, rows, [reasons[i] for i in why.tolist()], cause[why])
        self._keep_tails(s, rows)
        final = np.append(by.first[1:], True)  # each key's last reading in the batch
        self._last_ts[by.slot[final]] = by.latest[final]
        return self._ended(readings, s, rows)

    def _lay_out(self, readings: Readings, by: ByKey, s: Segments) -> _Rows:
        """One run of rows per segment: the readings its slot held, then the new ones."""
        n = int(s.length.sum())
        rows = _Rows(
            np.empty((n, self.n_features), np.float32),
            np.empty(n, np.float64),
            np.empty(n, np.int64),
            np.empty(n, np.int32),
            np.empty(n, np.int64),
        )
        g, k = group_ranks(s.held)
        at, src = s.base[g] + k, s.seg[g]
        rows.values[at], rows.ts[at], rows.offsets[at], rows.index[at] = (
            self._values[src, k],
            self._ts[src, k],
            self._offsets[src, k],
            self._index[src, k],
        )
        g, k = group_ranks(s.new)
        at = s.base[g] + s.held[g] + k
        rows.values[at], rows.ts[at] = readings.values[by.order], by.ts
        rows.offsets[at], rows.index[at] = readings.offsets[by.order], readings.indices()[by.order]
        rows.place[at] = by.order
        return rows

    def _discard_cut(self, s: Segments, rows: _Rows, reasons: list[str], causes: np.ndarray) -> None:
        """Segments a later silence in the batch cut short lose their never-covered rows;
        ``reasons`` and ``causes``: one per cut segment."""
        c = s.cut
        u = uncovered(s.seen[c], s.length[c], self.window, self.stride)
        if not u.any():
            return
        g, k = group_ranks(u)
        at = (s.base[c] + s.length[c] - u)[g] + k
        self._discard(
            Readings(
                self._key[s.seg[c][g]], rows.ts[at], rows.values[at], rows.offsets[at], "", 0, rows.index[at]
            ),
            [reasons[i] for i in g.tolist()],
            causes[g],
        )

    def _keep_tails(self, s: Segments, rows: _Rows) -> None:
        """The last segment of each key is what its slot holds from now on."""
        last = ~s.cut
        keep = np.minimum(s.length[last], self.window - 1)
        g, k = group_ranks(keep)
        at = (s.base[last] + s.length[last] - keep)[g] + k
        dst = s.seg[last]
        self._values[dst[g], k], self._ts[dst[g], k], self._offsets[dst[g], k], self._index[dst[g], k] = (
            rows.values[at],
            rows.ts[at],
            rows.offsets[at],
            rows.index[at],
        )
        self._held[dst], self._seen[dst] = keep, s.seen[last]

    def _ended(self, readings: Readings, s: Segments, rows: _Rows) -> Windows:
        """The windows the segments complete, in the stream order of their last reading."""
        g, end_row = window_ends(s, self.window, self.stride)
        by_stream = np.argsort(rows.place[end_row], kind="stable")
        end_row, g = end_row[by_stream], g[by_stream]
        start_row = end_row - (self.window - 1)
        rows_of = start_row[:, None] + np.arange(self.window)
        data = rows.values[rows_of]
        return Windows(
            keys=self._key[s.seg[g]],
            start_ts=rows.ts[start_row],
            end_ts=rows.ts[end_row],
            first_offset=rows.offsets[start_row],
            last_offset=rows.offsets[end_row],
            data=data if self.expand is None else self.expand(data, rows.ts[rows_of]),
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
            np.empty((0, self.window, self.n_out), dtype=np.float32),
            readings.topic,
            readings.partition,
        )
