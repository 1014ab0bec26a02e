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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.core.groups import group_ranks
from streamae.core.readings import Readings

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


class WindowStore:
    """Sliding windows for every key of one source partition."""

    def __init__(self, window: int, stride: int, n_features: int, idle_ttl_s: float = 0.0) -> None:
        if window < 1 or stride < 1:
            raise ValueError("window and stride must be >= 1")
        self.window = window
        self.stride = stride
        self.n_features = n_features
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

    def _uncovered(self, seen: np.ndarray, length: np.ndarray) -> np.ndarray:
        """How many of the last ``length`` of ``seen`` readings no window has covered."""
        w, s = self.window, self.stride
        last_end = np.where(seen >= w, w + (seen - w) // s * s, 0)
        uncovered: np.ndarray = seen - np.maximum(last_end, seen - length)
        return uncovered

    def _abandon(self, slots: np.ndarray, reasons: list[str], causes: np.ndarray) -> None:
        """Drop what ``slots`` hold; keep their never-covered readings as discarded."""
        u = self._uncovered(self._seen[slots], self._held[slots])
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
        order = np.argsort(codes, kind="stable")  # grouped by key, stream order kept in each
        slot = self._slots(np.asarray(uniques, dtype=object))[codes[order]]
        ts = readings.ts[order]
        first = np.ones(len(slot), bool)
        first[1:] = slot[1:] != slot[:-1]
        # a silence is measured from the key's latest time so far, not from the previous
        # reading: one reading stamped far in the past is windowed as it comes, and the next
        # one does not look like the end of a long silence
        rising = bool(np.all((ts[1:] >= ts[:-1]) | first[1:]))  # the usual case: no running max to take
        latest = ts if rising else pd.Series(ts).groupby(slot).cummax().to_numpy()
        latest = np.maximum(latest, self._last_ts[slot])
        prev = np.empty_like(ts)
        prev[1:] = latest[:-1]
        prev[first] = self._last_ts[slot[first]]
        gap = ts - prev > self.idle_ttl_s if self.idle_ttl_s else np.zeros(len(ts), bool)
        reasons = [self._silence(d) for d in (ts - prev)[gap].tolist()]
        reason_at = np.cumsum(gap) - 1  # a gap reading's index in `reasons` and `cause`
        cause = readings.offsets[order][gap]
        restart = first & gap  # what the slot holds ended at a silence before this batch
        if restart.any():
            at = reason_at[restart]
            self._abandon(slot[restart], [reasons[i] for i in at.tolist()], cause[at])

        # segments: runs of one key's readings without a silence inside; a key's first
        # segment continues what its slot holds
        starts = np.flatnonzero(first | gap)
        seg = slot[starts]
        cont = first[starts] & ~gap[starts]
        held = np.where(cont, self._held[seg], 0)
        seen0 = np.where(cont, self._seen[seg], 0)
        new = np.diff(np.append(starts, len(slot)))
        length = held + new
        base = np.cumsum(length) - length
        seen = seen0 + new

        # one run of rows per segment: the readings it held, then the new ones
        n_rows = int(length.sum())
        values = np.empty((n_rows, self.n_features), np.float32)
        rts = np.empty(n_rows, np.float64)
        roffs = np.empty(n_rows, np.int64)
        rindex = np.empty(n_rows, np.int32)
        g, k = group_ranks(held)
        rows = base[g] + k
        values[rows], rts[rows], roffs[rows], rindex[rows] = (
            self._values[seg[g], k],
            self._ts[seg[g], k],
            self._offsets[seg[g], k],
            self._index[seg[g], k],
        )
        g, k = group_ranks(new)
        rows = base[g] + held[g] + k
        values[rows], rts[rows], roffs[rows] = readings.values[order], ts, readings.offsets[order]
        rindex[rows] = readings.indices()[order]
        place = np.empty(n_rows, np.int64)  # a new row's position in the batch
        place[rows] = order

        # segments cut short by a silence later in this batch lose their never-covered rows
        cut = np.append(seg[1:] == seg[:-1], False)
        u = self._uncovered(seen[cut], length[cut]) if cut.any() else cut[:0]
        if u.any():
            g, k = group_ranks(u)
            rows = (base[cut] + length[cut] - u)[g] + k
            why = reason_at[starts[1:][cut[:-1]]]
            self._discard(
                Readings(self._key[seg[cut][g]], rts[rows], values[rows], roffs[rows], "", 0, rindex[rows]),
                [reasons[i] for i in why[g].tolist()],
                cause[why[g]],
            )

        # the last segment of each key is what its slot holds from now on
        last = ~cut
        keep = np.minimum(length[last], self.window - 1)
        g, k = group_ranks(keep)
        rows = (base[last] + length[last] - keep)[g] + k
        dst = seg[last]
        self._values[dst[g], k], self._ts[dst[g], k], self._offsets[dst[g], k], self._index[dst[g], k] = (
            values[rows],
            rts[rows],
            roffs[rows],
            rindex[rows],
        )
        self._held[dst], self._seen[dst] = keep, seen[last]
        final = np.append(first[1:], True)  # each key's last reading in the batch
        self._last_ts[slot[final]] = latest[final]

        # windows end at counts w, w + stride, ... of each segment's readings
        w, s = self.window, self.stride
        first_end = np.maximum(w, seen0 + 1)
        first_end += (w - first_end) % s
        n_ends = np.where(first_end <= seen, (seen - first_end) // s + 1, 0)
        g, k = group_ranks(n_ends)
        end_row = base[g] + held[g] + (first_end[g] + s * k - seen0[g]) - 1
        by_stream = np.argsort(place[end_row], kind="stable")
        end_row, g = end_row[by_stream], g[by_stream]
        start_row = end_row - (w - 1)
        return Windows(
            keys=self._key[seg[g]],
            start_ts=rts[start_row],
            end_ts=rts[end_row],
            first_offset=roffs[start_row],
            last_offset=roffs[end_row],
            data=values[start_row[:, None] + np.arange(w)],
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
