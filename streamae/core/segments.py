"""A batch of readings cut into segments: runs of one key's readings, in stream order, with
no silence inside. The arithmetic of :class:`~streamae.core.windows.WindowStore`, on arrays
only: where each key's readings sit, where a silence cuts them, which readings no window
covers, and where the windows end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.core.groups import group_ranks


@dataclass(frozen=True, slots=True)
class ByKey:
    """The batch grouped by key slot (stream order kept within each key)."""

    order: np.ndarray  # batch position of each grouped reading
    slot: np.ndarray  # its key's slot
    ts: np.ndarray
    first: np.ndarray  # the key's first reading in the batch
    latest: np.ndarray  # the key's latest event time up to this reading (a running max)
    prev: np.ndarray  # the key's latest event time before this reading

    @classmethod
    def of(cls, codes: np.ndarray, slot_of_code: np.ndarray, ts: np.ndarray, last_ts: np.ndarray) -> ByKey:
        order = np.argsort(codes, kind="stable")
        slot = slot_of_code[codes[order]]
        ts = ts[order]
        first = np.ones(len(slot), bool)
        first[1:] = slot[1:] != slot[:-1]
        # a silence is measured from the key's latest time so far, not from the previous
        # reading: one reading stamped far in the past is windowed as it comes, and the next
        # one does not look like the end of a long silence
        rising = bool(np.all((ts[1:] >= ts[:-1]) | first[1:]))  # the usual case: no running max
        latest = ts if rising else pd.Series(ts).groupby(slot).cummax().to_numpy()
        latest = np.maximum(latest, last_ts[slot])
        prev = np.empty_like(ts)
        prev[1:] = latest[:-1]
        prev[first] = last_ts[slot[first]]
        return cls(order, slot, ts, first, latest, prev)


@dataclass(frozen=True, slots=True)
class Segments:
    """One entry per segment; a key's first segment continues what its slot holds."""

    starts: np.ndarray  # grouped position of the segment's first new reading
    seg: np.ndarray  # its key's slot
    held: np.ndarray  # readings the slot held before it (0 after a silence)
    seen0: np.ndarray  # readings since the key (re)started, before it
    new: np.ndarray  # its readings from this batch
    cut: np.ndarray  # a later silence in this batch ends it
    length: np.ndarray  # its rows: what it held, then its new readings
    base: np.ndarray  # its first row when the segments are laid out one after another
    seen: np.ndarray  # readings since the key (re)started, after it

    @classmethod
    def of(cls, by: ByKey, gap: np.ndarray, held: np.ndarray, seen: np.ndarray) -> Segments:
        starts = np.flatnonzero(by.first | gap)
        seg = by.slot[starts]
        cont = by.first[starts] & ~gap[starts]
        new = np.diff(np.append(starts, len(by.slot)))
        cut = np.append(seg[1:] == seg[:-1], False)
        held0, seen0 = np.where(cont, held[seg], 0), np.where(cont, seen[seg], 0)
        length = held0 + new
        return cls(starts, seg, held0, seen0, new, cut, length, np.cumsum(length) - length, seen0 + new)


def uncovered(seen: np.ndarray, length: np.ndarray, window: int, stride: int) -> np.ndarray:
    """How many of the last ``length`` of ``seen`` readings no window has covered."""
    last_end = np.where(seen >= window, window + (seen - window) // stride * stride, 0)
    out: np.ndarray = seen - np.maximum(last_end, seen - length)
    return out


def window_ends(s: Segments, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows end at counts ``window``, ``window + stride``, ... of each segment's readings:
    the segment of each window, and the row of its last reading."""
    first_end = np.maximum(window, s.seen0 + 1)
    first_end += (window - first_end) % stride
    n_ends = np.where(first_end <= s.seen, (s.seen - first_end) // stride + 1, 0)
    g, k = group_ranks(n_ends)
    return g, s.base[g] + s.held[g] + (first_end[g] + stride * k - s.seen0[g]) - 1
