"""Detection quality on labelled data: point, point-adjusted, event and ranking metrics.

Inputs are aligned 1-D arrays, one row per scored window: ``labels`` (ground truth),
``flags`` (the detector alerted), ``scores`` (raw anomaly score) and ``timestamps``
(epoch seconds, increasing within a series). Several series may be concatenated for
pooled metrics; pass ``series`` (an id per row) so that events never run across the
boundary between two series. All results are JSON-ready (plain floats, ints, None), and
each metric has one self-explaining name, used as is in ``report.json`` and the benchmarks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

DAY_S = 86_400.0


def _check_lengths(**arrays: np.ndarray | None) -> int:
    lengths = {name: len(a) for name, a in arrays.items() if a is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError("length mismatch: " + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    return next(iter(lengths.values()), 0)


def _bool(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr.astype(bool)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _runs(mask: np.ndarray, series: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[start, end)`` of each run of True in ``mask``, cut where ``series`` changes."""
    n = len(mask)
    edge = np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    if series is not None and n > 1:
        cut = np.flatnonzero(np.asarray(series[1:] != series[:-1])) + 1  # first row of a new series
        cut = cut[mask[cut] & mask[cut - 1]]  # only cuts that fall inside a run split it
        starts = np.sort(np.concatenate([starts, cut]))
        ends = np.sort(np.concatenate([ends, cut]))
    return starts, ends


def point_metrics(labels: np.ndarray, flags: np.ndarray) -> dict[str, Any]:
    """Window-wise confusion counts and rates.

    ``precision``, ``recall`` and ``f1`` are 0.0 when their denominator is 0 (e.g. no
    flags, or no positive labels). ``false_alarm_rate_pct`` = fp/(fp+tn) and
    ``missed_alarm_rate_pct`` = fn/(fn+tp) are in percent, 0.0 when their denominator is 0.
    """
    _check_lengths(labels=labels, flags=flags)
    y, f = _bool(labels, "labels"), _bool(flags, "flags")
    tp = int(np.sum(y & f))
    fp = int(np.sum(~y & f))
    fn = int(np.sum(y & ~f))
    tn = int(np.sum(~y & ~f))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "true_positive_windows": tp,
        "false_positive_windows": fp,
        "false_negative_windows": fn,
        "true_negative_windows": tn,
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "false_alarm_rate_pct": 100.0 * _ratio(fp, fp + tn),
        "missed_alarm_rate_pct": 100.0 * _ratio(fn, fn + tp),
    }


def events(labels: np.ndarray, series: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Contiguous runs of positive labels as ``[start, end)`` row index pairs."""
    _check_lengths(labels=labels, series=series)
    starts, ends = _runs(_bool(labels, "labels"), None if series is None else np.asarray(series))
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def point_adjust(labels: np.ndarray, flags: np.ndarray, series: np.ndarray | None = None) -> np.ndarray:
    """Point-adjusted flags (Xu et al. 2018): an event with any flagged row is flagged whole.

    Rows outside labelled events keep their flag. Returns a new bool array.
    """
    _check_lengths(labels=labels, flags=flags, series=series)
    y, f = _bool(labels, "labels"), _bool(flags, "flags")
    starts, ends = _runs(y, None if series is None else np.asarray(series))
    csum = np.concatenate([[0], np.cumsum(f)])
    hit = csum[ends] > csum[starts]
    # +1 at each hit event's start, -1 at its end: the running sum marks its rows
    delta = np.zeros(len(f) + 1, dtype=np.int64)
    delta[starts[hit]] += 1
    delta[ends[hit]] -= 1
    return f | (np.cumsum(delta)[:-1] > 0)


def _span_s(timestamps: np.ndarray, series: np.ndarray | None) -> float:
    if len(timestamps) == 0:
        return 0.0
    if series is None:
        return float(np.max(timestamps) - np.min(timestamps))
    _, inverse = np.unique(series, return_inverse=True)
    k = int(inverse.max()) + 1
    hi = np.full(k, -np.inf)
    lo = np.full(k, np.inf)
    np.maximum.at(hi, inverse, timestamps)
    np.minimum.at(lo, inverse, timestamps)
    return float(np.sum(hi - lo))


def event_metrics(
    labels: np.ndarray,
    flags: np.ndarray,
    timestamps: np.ndarray,
    series: np.ndarray | None = None,
) -> dict[str, Any]:
    """Event-level detection: an event is a run of positive labels (cut at series changes).

    - ``labelled_events``, ``detected_events`` (events with a flagged row inside) and
      ``event_recall`` (None when there are no events).
    - ``detection_delay_mean_s`` / ``detection_delay_median_s``: seconds from an event's
      first row to its first flagged row, over detected events (None when none was detected).
    - ``false_alarm_events``: runs of flagged rows containing no labelled row, and
      ``false_alarm_events_per_day`` over ``span_days``, the summed time span of each series
      (None when that span is 0).
    """
    _check_lengths(labels=labels, flags=flags, timestamps=timestamps, series=series)
    y, f = _bool(labels, "labels"), _bool(flags, "flags")
    ts = np.asarray(timestamps, dtype=np.float64)
    if not np.all(np.isfinite(ts)):
        raise ValueError("timestamps contain non-finite values")
    ser = None if series is None else np.asarray(series)

    starts, ends = _runs(y, ser)
    flagged = np.flatnonzero(f)
    pos = np.searchsorted(flagged, starts)  # first flagged row at or after each event start
    first = flagged[np.minimum(pos, max(len(flagged) - 1, 0))] if len(flagged) else np.zeros_like(starts)
    hit = (pos < len(flagged)) & (first < ends)
    delays = ts[first[hit]] - ts[starts[hit]]

    f_starts, f_ends = _runs(f, ser)
    ycum = np.concatenate([[0], np.cumsum(y)])
    false_alarms = int(np.sum(ycum[f_ends] == ycum[f_starts]))
    span_days = _span_s(ts, ser) / DAY_S

    n_events, detected = len(starts), int(np.sum(hit))
    return {
        "labelled_events": n_events,
        "detected_events": detected,
        "event_recall": detected / n_events if n_events else None,
        "detection_delay_mean_s": float(np.mean(delays)) if detected else None,
        "detection_delay_median_s": float(np.median(delays)) if detected else None,
        "false_alarm_events": false_alarms,
        "span_days": span_days,
        "false_alarm_events_per_day": false_alarms / span_days if span_days > 0 else None,
    }


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Threshold-free quality of the raw scores: ``roc_auc`` and
    ``pr_auc_average_precision`` (the area under the precision-recall curve, estimated as
    average precision). Both None when the labels hold a single class."""
    _check_lengths(labels=labels, scores=scores)
    y = _bool(labels, "labels")
    s = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int(np.sum(~np.isfinite(s)))} non-finite values")
    if y.all() or not y.any():
        return {"roc_auc": None, "pr_auc_average_precision": None}
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "pr_auc_average_precision": float(average_precision_score(y, s)),
    }


def evaluate(
    labels: np.ndarray,
    flags: np.ndarray,
    scores: np.ndarray,
    timestamps: np.ndarray,
    series: np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics in one JSON-ready dict: ``windows`` (rows), ``point``, ``point_adjusted``,
    ``event`` and ``ranking``. Concatenate several series and pass ``series`` for pooled
    metrics; events and point adjustment are then cut at series boundaries."""
    n = _check_lengths(labels=labels, flags=flags, scores=scores, timestamps=timestamps, series=series)
    return {
        "windows": n,
        "point": point_metrics(labels, flags),
        "point_adjusted": point_metrics(labels, point_adjust(labels, flags, series)),
        "event": event_metrics(labels, flags, timestamps, series),
        "ranking": ranking_metrics(labels, scores),
    }
