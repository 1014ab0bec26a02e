"""Published benchmarks' own evaluation rules, reproduced to compare with their leaderboards.

These are not detectors and serve nowhere: a rule here may look at the future (it is named
and reported as non-causal), which a live daemon never can.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SKAB_STEPS = 60


def skab_leaderboard_rule(over: np.ndarray, steps: int = SKAB_STEPS) -> np.ndarray:
    """Row flags as the SKAB leaderboard's Conv-AE notebook derives them (non-causal).

    ``over[i]`` says whether the window ending at row ``i`` (of a file's scored rows) is over
    threshold. Row ``i`` is flagged only when every window ending at rows ``i .. i + steps - 2``
    is over threshold, and only for ``steps - 1 <= i <= n - 2 * steps + 1``: the first
    ``steps - 1`` rows and the last ``2 * steps - 1`` rows of a file can never be flagged.
    """
    over = np.asarray(over, dtype=bool)
    n = len(over)
    flags = np.zeros(n, dtype=bool)
    run = steps - 1
    lo, hi = steps - 1, n - 2 * steps + 1
    if hi < lo or n < run:
        return flags
    every = np.asarray(sliding_window_view(over, run).all(axis=1))  # all of over[i : i + run]
    flags[lo : hi + 1] = every[lo : hi + 1]
    return flags
