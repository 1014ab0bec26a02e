"""Alert thresholds calibrated on held-out normal scores, and score smoothing.

A window's anomaly score is its mean squared reconstruction error. ``calibrate`` turns
the scores of windows known to be normal into the score above which the daemon alerts;
``ewma`` smooths scores per key so a single noisy window does not raise an alert.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.signal import lfilter
from scipy.stats import genpareto

METHODS = ("quantile", "sigma", "pot")
MIN_EXCESSES = 10  # fewer cannot pin down both GPD parameters


def _finite_1d(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no scores to calibrate on")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"scores contain {int(np.sum(~np.isfinite(x)))} non-finite values")
    return x


def calibrate(
    scores: np.ndarray,
    method: str = "quantile",
    *,
    quantile: float = 0.995,
    k: float = 4.0,
    target_far: float = 1e-3,
    tail_quantile: float = 0.9,
) -> dict[str, Any]:
    """Alert threshold from scores of normal windows.

    Returns a JSON-ready dict with ``method``, ``value`` (finite, > 0) and the parameters
    that determined it:

    - ``quantile``: the empirical ``quantile`` of the scores.
    - ``sigma``: ``mean + k * std`` (ddof=1); also records ``k``, ``mean``, ``std``.
    - ``pot``: peaks over threshold (Siffer et al. 2017): a generalized Pareto tail fitted
      to the excesses over the ``tail_quantile`` quantile, extrapolated to the score
      exceeded with probability ``target_far`` per window; records ``target_far``,
      ``tail_quantile``, ``initial``, ``shape``, ``scale``, ``excesses``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    x = _finite_1d(scores)
    out: dict[str, Any]
    if method == "quantile":
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        out = {"method": method, "value": float(np.quantile(x, quantile)), "quantile": float(quantile)}
    elif method == "sigma":
        if x.size < 2:
            raise ValueError("sigma calibration needs at least 2 scores")
        mean, std = float(np.mean(x)), float(np.std(x, ddof=1))
        out = {"method": method, "value": mean + k * std, "k": float(k), "mean": mean, "std": std}
    else:
        out = _pot(x, target_far, tail_quantile)
    value = out["value"]
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{method} calibration gave a non-positive threshold {value}; are all scores 0?")
    return out


def _pot(x: np.ndarray, target_far: float, tail_quantile: float) -> dict[str, Any]:
    if not 0.0 < tail_quantile < 1.0:
        raise ValueError(f"tail_quantile must be in (0, 1), got {tail_quantile}")
    if not 0.0 < target_far < 1.0:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    n = x.size
    t = float(np.quantile(x, tail_quantile))
    y = x[x > t] - t
    n_t = y.size
    if n_t < MIN_EXCESSES:
        raise ValueError(
            f"pot calibration: only {n_t} scores exceed the tail_quantile={tail_quantile} threshold "
            f"{t:.6g} (need >= {MIN_EXCESSES}); use more scores or a lower tail_quantile"
        )
    ratio = target_far * n / n_t  # target probability, conditional on exceeding t
    if ratio >= 1.0:
        raise ValueError(
            f"pot calibration: target_far={target_far} is not rarer than the {n_t}/{n} scores above "
            f"the initial threshold; lower target_far or raise tail_quantile"
        )
    shape, _, scale = genpareto.fit(y, floc=0)
    shape, scale = float(shape), float(scale)
    if shape == 0.0:
        value = t - scale * math.log(ratio)
    else:
        # expm1 keeps precision when the fitted shape is tiny (near-exponential tail)
        value = t + scale / shape * math.expm1(-shape * math.log(ratio))
    if not (math.isfinite(value) and math.isfinite(shape) and scale > 0.0) or value < t:
        raise ValueError(
            f"pot calibration: degenerate tail fit (shape={shape:.6g}, scale={scale:.6g}, "
            f"threshold={value:.6g}, initial={t:.6g})"
        )
    return {
        "method": "pot",
        "value": value,
        "target_far": float(target_far),
        "tail_quantile": float(tail_quantile),
        "initial": t,
        "shape": shape,
        "scale": scale,
        "excesses": int(n_t),
    }


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
    out = x.copy()
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
