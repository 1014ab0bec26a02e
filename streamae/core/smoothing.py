"""Per-key score smoothing (EWMA), shared by serving, offline scoring and calibration.

So a single noisy window does not raise an alert; the state (key → last smoothed score)
carries the smoothing across micro-batches and restarts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.signal import lfilter


def ewma(
    scores: np.ndarray,
    alpha: float,
    keys: np.ndarray | None = None,
    state: dict[Any, float] | None = None,
) -> np.ndarray:
    """Exponentially weighted moving average ``s_t = alpha*x_t + (1-alpha)*s_{t-1}``.

    Rows are taken in the given order; with ``keys`` each key is smoothed on its own.
    A key's first value ever is its own score, unless ``state`` (key -> last smoothed value,
    updated in place; key ``None`` when ``keys`` is None) carries it over from an earlier
    call, so smoothing micro-batches with one shared state equals smoothing their
    concatenation. Non-finite scores raise ValueError: a NaN would poison the key's state.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores contain non-finite values")
    if keys is not None:
        keys = np.asarray(keys)
        if keys.shape != x.shape:
            raise ValueError(f"keys has {keys.shape[0] if keys.ndim else 0} rows, scores {x.size}")
    out: np.ndarray = x.copy()
    if x.size == 0:
        return out
    if keys is None:
        groups: list[tuple[Any, np.ndarray]] = [(None, np.arange(x.size))]
    else:
        uniq, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
        # numpy scalars -> plain str/int so the state is a plain dict
        groups = [
            (k.item() if isinstance(k, np.generic) else k, r) for k, r in zip(uniq, np.split(order, bounds))
        ]
    for key, rows in groups:
        xs = x[rows]
        if alpha < 1.0:
            prev = state.get(key) if state is not None else None
            start = xs[0] if prev is None else prev
            # zi is the filter's delay element: (1 - alpha) * s_{-1}
            ys, _ = lfilter([alpha], [1.0, alpha - 1.0], xs, zi=[(1.0 - alpha) * start])
            out[rows] = ys
        if state is not None:
            state[key] = float(out[rows[-1]])
    return out
