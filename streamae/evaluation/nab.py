"""Numenta Anomaly Benchmark (NAB 1.1) scoring.

A faithful re-implementation of NAB's scorer: ``nab/sweeper.py`` (per-row weights and the
one-pass threshold sweep), ``nab/optimizer.py`` (one threshold per detector and profile over
the whole corpus), ``nab/runner.py::normalize`` (null / perfect normalisation) and
``config/profiles.json`` (cost matrices). Rules, with the NAB function each comes from:

* The first ``probation_rows(n)`` rows of a series are not scored (``Sweeper._getProbationaryLength``).
* A row inside a label window, if detected, is worth ``A_tp * S(p) / S(-1)`` with
  ``p = -(right - i + 1) / width``: exactly ``A_tp`` at the window's first row, ``S(-1/width)/S(-1)``
  at its last. Only the best (= earliest) detected row of a window counts; a window with no
  detected scored row costs ``-A_fn`` (``Sweeper.calcSweepScore`` / ``calcScoreByThreshold``).
* A detected row outside every window costs ``A_fp * S((i - prev_right) / (prev_width - 1))``
  relative to the closest preceding window, or ``-A_fp`` when no window precedes it.
* A row is a detection when ``score >= threshold`` (``util.convertAnomalyScoresToDetections``).
* Normalised score ``100 * (raw - null) / (perfect - null)``: ``null`` is what a detector that
  never fires scores, ``perfect = A_tp * number of label windows`` (``Runner.normalize``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROBATION_PERCENT = 0.15  # Runner.probationaryPercent
WINDOWS_FILE = "labels/combined_windows.json"  # run.py's default --windowsFile


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


@dataclass(frozen=True, eq=False)
class Series:
    """One NAB data file: row timestamps and its label windows (inclusive ``(start, end)``).

    ``timestamps`` may be ``datetime64`` (as :func:`load_corpus` gives) or numbers; window limits
    must equal a row's timestamp exactly, as NAB's labeler guarantees and its sweeper assumes.
    """

    name: str
    timestamps: np.ndarray
    windows: tuple[tuple[Any, Any], ...] = ()

    @property
    def n_rows(self) -> int:
        return len(self.timestamps)

    def window_rows(self) -> np.ndarray:
        """``(k, 2)`` int64 first and last row of each window.

        Rows are found by timestamp equality, first occurrence, as ``Sweeper.calcSweepScore``
        does (``timestamps.index``): some NAB files repeat timestamps, so searching a sorted
        array would be wrong.
        """
        rows = np.empty((len(self.windows), 2), dtype=np.int64)
        for k, (start, end) in enumerate(self.windows):
            for j, limit in enumerate((start, end)):
                hit = np.flatnonzero(self.timestamps == limit)
                if not len(hit):
                    raise ValueError(f"{self.name}: window limit {limit!r} is not a row timestamp")
                rows[k, j] = hit[0]
        if len(rows) and (np.any(rows[:, 1] < rows[:, 0]) or np.any(rows[1:, 0] <= rows[:-1, 1])):
            # The sweeper walks windows in order and cannot nest or reorder them.
            raise ValueError(f"{self.name}: windows must be ordered and disjoint")
        return rows


@dataclass(frozen=True)
class RowWeights:
    """Per-row NAB "sweep score" of one series under one profile (``Sweeper.calcSweepScore``)."""

    weight: np.ndarray  # float64: value of this row if it were a detection
    window: np.ndarray  # int64: index of the row's window, -1 outside every window
    scored: np.ndarray  # bool: False in the probationary period
    n_windows: int


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


def _check_scores(series: Series, scores: np.ndarray) -> np.ndarray:
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
        s.name: score_detections(s, _check_scores(s, scores) >= threshold, profile, probation_percent)
        for s, scores in corpus
    }


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
    scores_l, weights_l, windows_l = [], [], []
    offset = 0
    for s, raw_scores in corpus:
        scores = _check_scores(s, raw_scores)
        rw = row_weights(s, profile, probation_percent)
        scores_l.append(scores[rw.scored])
        weights_l.append(rw.weight[rw.scored])
        # Windows get corpus-wide ids so that each keeps its own best detection.
        windows_l.append(np.where(rw.window >= 0, rw.window + offset, -1)[rw.scored])
        offset += rw.n_windows
    scores = np.concatenate(scores_l)
    weights = np.concatenate(weights_l)
    windows = np.concatenate(windows_l)
    series_only = [s for s, _ in corpus]
    null = null_score(series_only, profile, probation_percent)
    perfect = perfect_score(series_only, profile)

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


def sweep_profiles(
    corpus: Sequence[tuple[Series, np.ndarray]], probation_percent: float = PROBATION_PERCENT
) -> dict[str, SweepResult]:
    """:func:`sweep` for every profile of :data:`PROFILES` (each gets its own threshold)."""
    return {name: sweep(corpus, cm, probation_percent) for name, cm in PROFILES.items()}


def load_corpus(root: Path, windows_file: str = WINDOWS_FILE) -> list[Series]:
    """Read NAB's ``data/<category>/<file>.csv`` and label windows under ``root``.

    Every file named in the windows JSON is loaded (as ``Runner.detect`` does), sorted by name;
    timestamps are ``datetime64[ns]``.
    """
    root = Path(root)
    labels: dict[str, list[list[str]]] = json.loads((root / windows_file).read_text())
    corpus = []
    for name in sorted(labels):
        frame = pd.read_csv(root / "data" / name, usecols=["timestamp"])
        ts = pd.to_datetime(frame["timestamp"], format="%Y-%m-%d %H:%M:%S").to_numpy("datetime64[ns]")
        windows = tuple(
            (np.datetime64(pd.Timestamp(start), "ns"), np.datetime64(pd.Timestamp(end), "ns"))
            for start, end in labels[name]
        )
        corpus.append(Series(name=name, timestamps=ts, windows=windows))
    return corpus
