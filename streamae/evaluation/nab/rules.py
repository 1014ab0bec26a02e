"""NAB's scoring rules for one threshold: costs, probation, per-row weights, normalisation.

``config/profiles.json`` (:data:`PROFILES`), ``Sweeper.calcSweepScore`` (:func:`row_weights`),
``Sweeper.calcScoreByThreshold`` (:func:`score_detections`) and ``Runner.normalize``
(:func:`null_score`, :func:`perfect_score`, :func:`normalise`); the rules themselves are
listed in the package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamae.evaluation.nab.corpus import Series

PROBATION_PERCENT = 0.15  # Runner.probationaryPercent


@dataclass(frozen=True)
class CostMatrix:
    """Weights of one NAB application profile (``config/profiles.json``)."""

    tp: float
    fp: float
    fn: float
    tn: float = 1.0  # present in NAB's profiles, never used by its scorer


PROFILES: dict[str, CostMatrix] = {
    "standard": CostMatrix(tp=1.0, fp=0.11, fn=1.0, tn=1.0),
    "reward_low_FP_rate": CostMatrix(tp=1.0, fp=0.22, fn=1.0, tn=1.0),
    "reward_low_FN_rate": CostMatrix(tp=1.0, fp=0.11, fn=2.0, tn=1.0),
}


@dataclass(frozen=True)
class RowWeights:
    """Per-row NAB "sweep score" of one series under one profile (``Sweeper.calcSweepScore``)."""

    weight: np.ndarray  # float64: value of this row if it were a detection
    window: np.ndarray  # int64: index of the row's window, -1 outside every window
    scored: np.ndarray  # bool: False in the probationary period
    n_windows: int


def probation_rows(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> int:
    """Number of leading rows that are not scored: ``min(floor(p * n), p * 5000)``.

    Same float arithmetic as ``util.getProbationPeriod``; rows ``i < limit`` are probationary, so
    a fractional limit rounds up.
    """
    limit = min(math.floor(probation_percent * n_rows), probation_percent * 5000)
    return max(0, min(n_rows, math.ceil(limit)))


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray | float:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5 y)) - 1``, and exactly -1 for ``y > 3``.

    -1 (window start) → 0.98661, 0 (window end) → 0, 1 → -0.98661 (``sweeper.scaledSigmoid``).
    """
    arr = np.asarray(y, dtype=np.float64)
    # Clip only what goes into exp: values > 3 are replaced by -1 anyway, and exp must not overflow.
    val = 2.0 / (1.0 + np.exp(5.0 * np.minimum(arr, 3.0))) - 1.0
    out = np.where(arr > 3.0, -1.0, val)
    return float(out) if np.ndim(y) == 0 else out


_MAX_TP = float(scaled_sigmoid(-1.0))  # Sweeper.calcSweepScore's maxTP


def row_weights(
    series: Series, profile: CostMatrix, probation_percent: float = PROBATION_PERCENT
) -> RowWeights:
    """Value of each row of ``series`` if detected, under ``profile``."""
    n = series.n_rows
    rows = series.window_rows()
    idx = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    weight = np.empty(n, dtype=np.float64)
    for k, (left, right) in enumerate(rows):
        window[left : right + 1] = k
        width = right - left + 1
        # The "+ 1" means a window's last row sits at -1/width, never at 0 (as in NAB).
        pos = -(right - idx[left : right + 1] + 1) / width
        weight[left : right + 1] = scaled_sigmoid(pos) * profile.tp / _MAX_TP
    out = window < 0
    # Closest window that ended before each outside row.
    prev = np.searchsorted(rows[:, 1], idx[out], side="left") - 1
    fp = np.full(int(out.sum()), -1.0)  # no preceding window: as if far away
    has_prev = prev >= 0
    if has_prev.any():
        p = prev[has_prev]
        dist = (idx[out][has_prev] - rows[p, 1]).astype(np.float64)
        width_minus_1 = (rows[p, 1] - rows[p, 0]).astype(np.float64)
        # A one-row window makes NAB divide by zero; treat every later row as far away (-1).
        with np.errstate(divide="ignore"):
            fp[has_prev] = scaled_sigmoid(dist / width_minus_1)
    weight[out] = fp * profile.fp
    scored = idx >= probation_rows(n, probation_percent)
    return RowWeights(weight, window, scored, len(rows))


def check_scores(series: Series, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (series.n_rows,):
        raise ValueError(f"{series.name}: {scores.shape} scores for {series.n_rows} rows")
    if np.isnan(scores).any():
        raise ValueError(f"{series.name}: NaN anomaly score")
    return scores


def score_detections(
    series: Series,
    detections: np.ndarray,
    profile: CostMatrix,
    probation_percent: float = PROBATION_PERCENT,
) -> float:
    """Raw NAB score of one series for boolean ``detections`` (one per row).

    Detections in the probationary period are ignored; a window made only of probationary rows
    counts nothing, neither TP nor FN (NAB never gives it a score part).
    """
    det = np.asarray(detections, dtype=bool)
    if det.shape != (series.n_rows,):
        raise ValueError(f"{series.name}: {det.shape} detections for {series.n_rows} rows")
    rw = row_weights(series, profile, probation_percent)
    det = det & rw.scored
    inside = rw.window >= 0
    fp = float(rw.weight[det & ~inside].sum())
    live = np.zeros(rw.n_windows, dtype=bool)
    live[rw.window[rw.scored & inside]] = True
    best = np.full(rw.n_windows, -profile.fn)
    hit = det & inside
    np.maximum.at(best, rw.window[hit], rw.weight[hit])
    return fp + float(best[live].sum())


def null_score(
    corpus: Sequence[Series], profile: CostMatrix, probation_percent: float = PROBATION_PERCENT
) -> float:
    """Raw score of a detector that never fires: ``-A_fn`` per window with a scored row."""
    live = 0
    for s in corpus:
        first_scored = probation_rows(s.n_rows, probation_percent)
        live += int(np.sum(s.window_rows()[:, 1] >= first_scored))
    return -profile.fn * live


def perfect_score(corpus: Sequence[Series], profile: CostMatrix) -> float:
    """``A_tp`` times the number of label windows (``Runner.normalize``'s ``tpCount``)."""
    return profile.tp * sum(len(s.windows) for s in corpus)


def normalise(raw: float, null: float, perfect: float) -> float:
    """``100 * (raw - null) / (perfect - null)``; NaN when the corpus has no window."""
    if perfect == null:
        return math.nan
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus(
    corpus: Sequence[tuple[Series, np.ndarray]],
    profile: CostMatrix,
    threshold: float,
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, float]:
    """Raw score of each series at a fixed ``threshold`` (detection: ``score >= threshold``)."""
    return {
        s.name: score_detections(s, check_scores(s, scores) >= threshold, profile, probation_percent)
        for s, scores in corpus
    }
