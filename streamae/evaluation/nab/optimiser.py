"""NAB's optimiser: the one threshold per profile that maximises the corpus score.

``optimizer.optimizeThreshold`` over ``Sweeper.calcScoreByThreshold``'s candidates, in one
sorted pass instead of a score per threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.evaluation.nab.corpus import Series
from streamae.evaluation.nab.rules import (
    PROBATION_PERCENT,
    PROFILES,
    CostMatrix,
    check_scores,
    normalise,
    null_score,
    perfect_score,
    row_weights,
    score_corpus,
)


@dataclass(frozen=True)
class SweepResult:
    """Best corpus-wide threshold for one profile, as NAB's optimiser picks it."""

    profile: CostMatrix
    threshold: float  # detection: score >= threshold; inf = never detect (NAB reports 1.1)
    raw: float  # summed raw score over the corpus at ``threshold``
    normalised: float  # 100 * (raw - null) / (perfect - null)
    null: float
    perfect: float
    per_series: dict[str, float]  # raw score of each series at ``threshold``
    thresholds: np.ndarray  # every candidate threshold, descending, inf first
    raw_by_threshold: np.ndarray  # corpus raw score at each candidate threshold


def sweep(
    corpus: Sequence[tuple[Series, np.ndarray]],
    profile: CostMatrix,
    probation_percent: float = PROBATION_PERCENT,
) -> SweepResult:
    """Pick the one threshold that maximises the corpus raw score, in one O(n log n) pass.

    ``corpus`` pairs each series with its detector's anomaly scores (float, one per row; NAB's
    detectors give [0, 1] but any range works). As in ``Sweeper.calcScoreByThreshold`` the
    candidates are "detect nothing" and every distinct score of a scored row; as in
    ``optimizer.optimizeThreshold`` (stable sort on score) ties go to the highest threshold.
    """
    if not corpus:
        raise ValueError("empty corpus")
    scores, weights, windows = _scored_rows(corpus, profile, probation_percent)
    series_only = [s for s, _ in corpus]
    null = null_score(series_only, profile, probation_percent)
    perfect = perfect_score(series_only, profile)

    thresholds, raw_by_threshold = _score_by_threshold(scores, weights, windows, profile, null)
    best_i = int(np.argmax(raw_by_threshold))  # first maximum = highest threshold
    threshold = float(thresholds[best_i])

    # Recompute the winner series by series: exact sums, and the per-series breakdown.
    per_series = score_corpus(corpus, profile, threshold, probation_percent)
    raw = float(sum(per_series.values()))
    return SweepResult(
        profile=profile,
        threshold=threshold,
        raw=raw,
        normalised=normalise(raw, null, perfect),
        null=null,
        perfect=perfect,
        per_series=per_series,
        thresholds=thresholds,
        raw_by_threshold=raw_by_threshold,
    )


def _scored_rows(
    corpus: Sequence[tuple[Series, np.ndarray]], profile: CostMatrix, probation_percent: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scored rows of the whole corpus: score, weight, and corpus-wide window id (-1
    outside every window)."""
    scores_l, weights_l, windows_l = [], [], []
    offset = 0
    for s, raw_scores in corpus:
        scores = check_scores(s, raw_scores)
        rw = row_weights(s, profile, probation_percent)
        scores_l.append(scores[rw.scored])
        weights_l.append(rw.weight[rw.scored])
        # Windows get corpus-wide ids so that each keeps its own best detection.
        windows_l.append(np.where(rw.window >= 0, rw.window + offset, -1)[rw.scored])
        offset += rw.n_windows
    return np.concatenate(scores_l), np.concatenate(weights_l), np.concatenate(windows_l)


def _score_by_threshold(
    scores: np.ndarray, weights: np.ndarray, windows: np.ndarray, profile: CostMatrix, null: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate threshold (descending, inf first) and the corpus raw score at each."""
    # Lower the threshold one row at a time, highest score first; delta is how much the
    # corpus score changes when that row becomes a detection.
    order = np.argsort(-scores, kind="stable")
    s_sorted, w_sorted, g_sorted = scores[order], weights[order], windows[order]
    delta = np.where(g_sorted < 0, w_sorted, 0.0)
    inside = np.flatnonzero(g_sorted >= 0)
    if len(inside):
        # A window's part is max(-A_fn, best weight detected so far): a running max per window.
        best = pd.Series(w_sorted[inside]).groupby(g_sorted[inside]).cummax().to_numpy()
        before = pd.Series(best).groupby(g_sorted[inside]).shift(1).to_numpy()
        before = np.where(np.isnan(before), -profile.fn, np.maximum(before, -profile.fn))
        delta[inside] = np.maximum(best, -profile.fn) - before
    running = null + np.cumsum(delta)
    # A threshold t detects every row with score >= t: read the running score at the last row
    # of each run of equal scores.
    last: np.ndarray | list[int] = (
        np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) if len(s_sorted) else []
    )
    thresholds = np.r_[np.inf, s_sorted[last]]
    raw_by_threshold = np.r_[null, running[last]]
    return thresholds, raw_by_threshold


def sweep_profiles(
    corpus: Sequence[tuple[Series, np.ndarray]], probation_percent: float = PROBATION_PERCENT
) -> dict[str, SweepResult]:
    """:func:`sweep` for every profile of :data:`PROFILES` (each gets its own threshold)."""
    return {name: sweep(corpus, cm, probation_percent) for name, cm in PROFILES.items()}
