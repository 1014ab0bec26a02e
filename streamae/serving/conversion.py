"""Lists of decoded values to numpy columns in a few vectorised calls, with a per-item slow
path that only the odd items take (so each item's fate depends on that item alone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: Rows converted one by one at most; larger runs are split so one odd record does not
#: send its whole batch down the slow path.
_SLOW_RUN = 8


def numeric_rows(rows: list[Any]) -> np.ndarray | None:
    """A run of value rows as a float32 matrix; None when any item is not numeric."""
    return _numeric(rows, 2, np.float32)


def numeric_stamps(stamps: list[Any]) -> np.ndarray | None:
    """A run of timestamps as float64 epoch seconds; None when any is not a number."""
    return _numeric(stamps, 1, np.float64)


def _numeric(items: list[Any], ndim: int, dtype: type[np.floating[Any]]) -> np.ndarray | None:
    # dtype inference is the vectorised type check: any string, null or nested value
    # turns the whole array into a non-numeric kind
    try:
        arr = np.array(items)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind not in "fiu" or arr.ndim != ndim:
        return None
    with np.errstate(over="ignore"):
        return arr.astype(dtype)


def convert(
    items: list[Any],
    out: np.ndarray,
    fast: Callable[[list[Any]], np.ndarray | None],
    slow: Callable[[Any], Any],
) -> dict[int, str]:
    """Fill ``out`` from ``items``: ``fast`` converts a run at once (None: the run holds an
    odd item); a run that fails is halved until it is short, then ``slow`` takes each item
    (raising ValueError/TypeError for a bad one). Returns the reasons of the bad items.

    So a batch with a few odd items still converts in a few vectorised calls, and each
    item's fate depends on that item alone.
    """
    bad: dict[int, str] = {}
    todo = [(0, len(items))]
    while todo:
        lo, hi = todo.pop()
        converted = fast(items[lo:hi])
        if converted is not None:
            out[lo:hi] = converted
        elif hi - lo > _SLOW_RUN:
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]
        else:
            for r in range(lo, hi):
                try:
                    with np.errstate(over="ignore"):
                        out[r] = slow(items[r])
                except (TypeError, ValueError, OverflowError) as exc:
                    bad[r] = str(exc)
    return bad
