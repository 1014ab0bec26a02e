"""Streaming post-processing of window scores, per key, as the bundle's ``postprocess`` says.

It runs after smoothing, on ``ratio = score / threshold`` (a window is anomalous when its
final ratio exceeds 1), in this order; each stage is off unless the bundle turns it on:

``likelihood``
    HTM's anomaly likelihood: how unusual the recent (short EWMA) log-ratio is against the
    key's long-run (long EWMA) mean and spread; ``ratio = Φ(z) / (1 - likelihood_far)``, so a
    window crosses 1 when its likelihood passes ``1 - likelihood_far``.
``record_high``
    Record-high output: a window keeps its ratio only when it beats the key's running record
    (a maximum that decays by half every ``record_half_life`` windows) by ``record_margin``,
    else 0 — the onset of an excursion is reported, its plateau is not.
``range_widen``
    HTM's "spatial" rule: a newest reading outside the running range of its key (seeded with
    the training range) widened by this fraction of the range on each side is anomalous
    whatever the model says (``ratio = max(ratio, 1 + excess)``).
``suppress_windows``
    After a window is flagged, the next ``suppress_windows`` windows of its key are not.

The state per key (EWMAs, record, running range, quiet countdown) is a plain JSON-ready
dict, carried across micro-batches, saved with the alert state and restored after a restart;
``serve``, ``score`` and ``evaluate`` share this code, so they agree window by window.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from streamae.core.groups import positions
from streamae.core.manifest import PostSpec
from streamae.core.smoothing import ewma

#: component → key → value; see :func:`new_state`
PostState = dict[str, dict[str, Any]]
_COMPONENTS = ("like_mean", "like_sq", "like_short", "record", "lo", "hi", "quiet")
_FLOOR = 1e-12


def new_state() -> PostState:
    """Empty post-processing state (one dict per component, keyed by entity key)."""
    return {c: {} for c in _COMPONENTS}


def forget(state: PostState, keys: list[str]) -> None:
    """Drop the state of ``keys`` (forgotten idle keys), so the state stays bounded."""
    for part in state.values():
        for key in keys:
            part.pop(key, None)


def is_active(spec: PostSpec) -> bool:
    return spec.likelihood or spec.record_high or spec.range_widen is not None or spec.suppress_windows > 0


def apply(
    spec: PostSpec, keys: np.ndarray, ratio: np.ndarray, newest: np.ndarray, state: PostState | None
) -> np.ndarray:
    """Final ratios of windows in stream order (per key): ``ratio`` (score / threshold after
    smoothing), ``newest`` their last readings ``(m, F)``; ``state`` is updated in place."""
    if not is_active(spec) or not len(ratio):
        return ratio
    state = new_state() if state is None else state
    for c in _COMPONENTS:
        state.setdefault(c, {})
    keys = np.asarray(keys, dtype=object)
    out: np.ndarray = np.asarray(ratio, dtype=np.float64).copy()
    if spec.likelihood:
        out = _likelihood(spec, keys, out, state)
    if spec.record_high or spec.range_widen is not None or spec.suppress_windows:
        codes, uniques = pd.factorize(keys)
        order = np.argsort(codes, kind="stable")
        group = codes[order]
        names = [str(u) for u in uniques]
        sorted_out = out[order]
        if spec.record_high:
            sorted_out = _record_high(spec, group, names, sorted_out, state)
        if spec.range_widen is not None:
            sorted_out = _range_rule(spec, group, names, sorted_out, newest[order], state)
        if spec.suppress_windows:
            sorted_out = _quiet(spec.suppress_windows, group, names, sorted_out, state)
        out[order] = sorted_out
    return out


def _likelihood(spec: PostSpec, keys: np.ndarray, ratio: np.ndarray, state: PostState) -> np.ndarray:
    y = np.log(np.maximum(ratio, _FLOOR))
    mean = ewma(y, spec.likelihood_alpha, keys, state["like_mean"])
    sq = ewma(y * y, spec.likelihood_alpha, keys, state["like_sq"])
    short = ewma(y, spec.likelihood_short_alpha, keys, state["like_short"])
    spread = np.sqrt(np.maximum(sq - mean * mean, 1e-6))
    out: np.ndarray = ndtr((short - mean) / spread) / (1.0 - spec.likelihood_far)
    return out


def _record_high(
    spec: PostSpec, group: np.ndarray, names: list[str], ratio: np.ndarray, state: PostState
) -> np.ndarray:
    # in log space a record decaying by λ per window is a running max of v_j + jλ, less tλ
    lam = math.log(2.0) / spec.record_half_life
    v = np.log(np.maximum(ratio, _FLOOR))
    t, first = positions(group)
    w = v + t * lam
    records = state["record"]
    seed = np.array([records.get(names[g], -np.inf) for g in group[first]]) - lam
    frame = pd.DataFrame({"g": np.r_[group[first], group], "w": np.r_[seed, w]})
    frame["o"] = np.r_[np.zeros(len(first)), np.ones(len(w))]  # seeds sort first per group
    frame = frame.sort_values(["g", "o"], kind="stable")
    running = frame.groupby("g", sort=False)["w"].cummax().to_numpy()
    is_row = frame["o"].to_numpy() == 1
    # the record before each row: the running max one step earlier in its group
    previous = np.r_[-np.inf, running[:-1]][is_row] - t * lam
    last = np.r_[first[1:], len(group)] - 1
    final = running[is_row][last] - t[last] * lam
    for g, value in zip(group[first].tolist(), final.tolist()):
        records[names[g]] = value
    return np.where(v > previous + math.log1p(spec.record_margin), ratio, 0.0)


def _range_rule(
    spec: PostSpec,
    group: np.ndarray,
    names: list[str],
    ratio: np.ndarray,
    newest: np.ndarray,
    state: PostState,
) -> np.ndarray:
    widen = float(spec.range_widen or 0.0)
    lo_state, hi_state = state["lo"], state["hi"]
    _, first = positions(group)
    f = newest.shape[1]
    seed_lo = np.array([lo_state.get(names[g], spec.range_lo) for g in group[first]], dtype=np.float64)
    seed_hi = np.array([hi_state.get(names[g], spec.range_hi) for g in group[first]], dtype=np.float64)
    seed_lo, seed_hi = seed_lo.reshape(-1, f), seed_hi.reshape(-1, f)
    # running min/max of earlier readings: the seed row, then each reading, one step behind
    rows = np.concatenate([seed_lo, newest]), np.concatenate([seed_hi, newest])
    g = np.r_[group[first], group]
    o = np.r_[np.zeros(len(first)), np.ones(len(group))]
    idx = np.lexsort((o, g))
    lo_run = pd.DataFrame(rows[0][idx]).groupby(g[idx], sort=False).cummin().to_numpy()
    hi_run = pd.DataFrame(rows[1][idx]).groupby(g[idx], sort=False).cummax().to_numpy()
    is_row = o[idx] == 1
    prev_lo = np.vstack([np.full((1, f), np.inf), lo_run[:-1]])[is_row]
    prev_hi = np.vstack([np.full((1, f), -np.inf), hi_run[:-1]])[is_row]
    span = np.maximum(prev_hi - prev_lo, 0.0)
    below, above = prev_lo - widen * span - newest, newest - (prev_hi + widen * span)
    excess = np.maximum(below, above) / np.where(span > 0, span, 1.0)
    worst = np.nan_to_num(excess.max(axis=1), nan=-np.inf, neginf=-np.inf)
    last = np.r_[first[1:], len(group)] - 1
    final_lo, final_hi = lo_run[is_row][last].tolist(), hi_run[is_row][last].tolist()
    for k, lo, hi in zip(group[first].tolist(), final_lo, final_hi):
        lo_state[names[k]], hi_state[names[k]] = lo, hi
    return np.where(worst > 0, np.maximum(ratio, 1.0 + worst), ratio)


def _quiet(
    quiet: int, group: np.ndarray, names: list[str], ratio: np.ndarray, state: PostState
) -> np.ndarray:
    """Flags are rare, so walking the flagged rows in Python costs little."""
    left = state["quiet"]
    t, first = positions(group)
    out: np.ndarray = ratio.copy()
    held = np.array([left.get(names[g], 0) for g in group], dtype=np.int64)
    # rows still inside the quiet period carried over from earlier batches
    out[(t < held) & (out > 1.0)] = 0.999
    flagged = np.flatnonzero(out > 1.0)
    until: dict[int, int] = {}  # group -> last position it is quiet through
    for i in flagged.tolist():
        g = int(group[i])
        if t[i] <= until.get(g, -1):
            out[i] = 0.999
        else:
            until[g] = int(t[i]) + quiet
    last = np.r_[first[1:], len(group)] - 1
    for g, end in zip(group[first].tolist(), last.tolist()):
        carried = int(held[end]) - int(t[end]) - 1
        fresh = until.get(g, -1) - int(t[end])
        left[names[g]] = max(carried, fresh, 0)
    return out
