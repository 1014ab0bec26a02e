"""Alert thresholds calibrated on held-out normal scores.

Calibration is the step of the detector contract (``streamae.core.detector``) separate
from fitting, as alibi-detect's ``infer_threshold``: :func:`calibrate` turns the scores of
windows known to be normal into the score above which the daemon alerts;
:func:`calibrate_scorer` gets those scores from the very :class:`Scorer` that serves, through
the pipeline of ``streamae score``. Training calibrates a new bundle with it, and
``streamae calibrate`` (``streamae.training.recalibrate``) an existing one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import genpareto

from streamae.core.config import TrainSettings
from streamae.core.offline import score_windows
from streamae.core.scoring import Scorer
from streamae.core.windows import Windows

METHODS = ("quantile", "sigma", "pot")
MIN_EXCESSES = 10  # fewer cannot pin down both GPD parameters
# A perfectly reconstructed signal (a flat line, PCA on a constant) scores 0 everywhere;
# float32 resolution is the smallest error that means anything, so thresholds start there.
SCORE_FLOOR = 1e-9


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


@dataclass(frozen=True)
class ThresholdRule:
    """How a threshold is set from normal scores: a :data:`METHODS` entry and its parameter
    (``quantile``; ``sigma_k`` for sigma; ``target_far`` for pot)."""

    method: str = "quantile"
    quantile: float = 0.995
    sigma_k: float = 4.0
    target_far: float = 1e-3

    @classmethod
    def of(cls, cfg: TrainSettings) -> ThresholdRule:
        """The rule that training settings (or ``streamae calibrate``'s flags) ask for."""
        return cls(cfg.threshold, cfg.quantile, cfg.sigma_k, cfg.target_far)

    def apply(self, scores: np.ndarray) -> dict[str, Any]:
        """:func:`calibrate` by this rule."""
        return calibrate(
            scores, self.method, quantile=self.quantile, k=self.sigma_k, target_far=self.target_far
        )


def calibrate_scorer(
    scorer: Scorer, windows: Windows, rule: ThresholdRule
) -> tuple[dict[str, Any], np.ndarray]:
    """The manifest ``threshold`` record of ``scorer``'s bundle, set by ``rule`` on held-out
    normal ``windows``, and the scores it was set on.

    The scores are those ``streamae score`` gives the same windows (same order, each key
    smoothed from its first window by the bundle's ``ewma_alpha``): both go through
    :func:`streamae.core.offline.score_windows`. Raises ValueError when ``rule`` cannot be
    met on these scores (too few windows for pot, all scores 0, ...).
    """
    _, scores = score_windows(scorer, windows)
    cal = rule.apply(np.maximum(scores, SCORE_FLOOR))
    record = {
        "value": cal["value"],
        "method": cal["method"],
        "params": {k: float(v) for k, v in cal.items() if k not in ("method", "value")},
        "ewma_alpha": scorer.manifest.threshold.ewma_alpha,
        "calibration_windows": len(windows),
    }
    return record, scores


def score_summary(scores: np.ndarray) -> dict[str, float]:
    """The manifest metrics that describe the scores a threshold was calibrated on."""
    return {
        "calibration_score_median": float(np.median(scores)),
        "calibration_score_max": float(scores.max()),
    }
