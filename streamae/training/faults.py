"""Synthetic faults injected into normal history, so a detector can be chosen without labels.

Model selection (``streamae train`` with no ``--variant``) never sees a real label: it
injects these faults into held-out *normal* readings and keeps the candidate that tells
faulty windows from normal ones best. The family is generic on purpose, covering what
goes wrong with sensors and with transaction streams alike; every magnitude is relative
to the feature's own spread in the normal data (its standard deviation, or the typical
step between consecutive readings for noise):

==================  =====================================================================
``spike``           1–3 readings of one feature jump by 3–6 σ (a glitch, a fat-finger amount)
``level_shift``     one feature steps by 1–2 σ for a while (miscalibration, a new regime)
``drift``           one feature ramps away by up to 2–3 σ (sensor ageing, slow fraud build-up)
``stuck``           one feature freezes at its current value (a dead sensor, a stale feed)
``noise``           one feature becomes much noisier (a loose contact, bursty traffic)
``gain``            one feature is scaled by 1.3–1.6 about its mean (a wrong unit or rate)
``dropout``         one feature reads its normal minimum (a lost signal, zero amounts)
``decorrelation``   one feature replays its own values from elsewhere: each value plausible,
                    but it no longer moves with the others (a broken link between sensors)
``group_shift``     2–3 features step together by 1–1.5 σ (a shared upstream fault)
==================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KINDS = (
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "noise",
    "gain",
    "dropout",
    "decorrelation",
    "group_shift",
)
_DURATION = {
    "spike": (1, 3),
    "level_shift": (15, 40),
    "drift": (20, 50),
    "stuck": (20, 50),
    "noise": (15, 40),
    "gain": (15, 40),
    "dropout": (5, 20),
    "decorrelation": (20, 50),
    "group_shift": (15, 40),
}


@dataclass(frozen=True)
class Fault:
    """One injected fault: rows ``start..end`` (inclusive) of the series, on ``features``."""

    kind: str
    start: int
    end: int
    features: tuple[int, ...]


def inject(
    values: np.ndarray,
    rng: np.random.Generator,
    n_faults: int,
    kinds: Sequence[str] = KINDS,
    margin: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[Fault]]:
    """A copy of one series' readings ``(n, F)`` with ``n_faults`` faults of ``kinds`` at
    random, non-overlapping places (at least ``margin`` normal rows between two, and before
    the first), the per-row labels (1 inside a fault) and the faults themselves."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; choose from {', '.join(KINDS)}")
    out = np.array(values, dtype=np.float64, copy=True)
    n, f = out.shape
    sigma = np.maximum(out.std(axis=0), 1e-9)
    step = np.maximum(np.abs(np.diff(out, axis=0)).mean(axis=0) if n > 1 else sigma, 1e-9)
    labels = np.zeros(n, dtype=np.int8)
    faults: list[Fault] = []
    free = np.ones(n, dtype=bool)
    free[:margin] = False
    for i in range(n_faults):
        kind = kinds[i % len(kinds)]
        lo_len, hi_len = _DURATION[kind]
        length = int(rng.integers(lo_len, hi_len + 1))
        starts = _free_starts(free, length, margin)
        if not len(starts):
            break
        start = int(rng.choice(starts))
        end = start + length - 1
        cols = _columns(rng, kind, f)
        _apply(out, rng, kind, start, end, cols, sigma, step)
        labels[start : end + 1] = 1
        free[max(0, start - margin) : end + 1 + margin] = False
        faults.append(Fault(kind, start, end, cols))
    return out, labels, faults


def _free_starts(free: np.ndarray, length: int, margin: int) -> np.ndarray:
    """Rows where a fault of ``length`` fits entirely on free rows."""
    if length > len(free):
        return np.empty(0, dtype=np.int64)
    blocked = np.concatenate([[0], np.cumsum(~free)])
    ok = blocked[length:] - blocked[:-length] == 0
    return np.flatnonzero(ok)


def _columns(rng: np.random.Generator, kind: str, f: int) -> tuple[int, ...]:
    if kind == "group_shift" and f > 1:
        size = int(rng.integers(2, min(3, f) + 1))
        return tuple(sorted(int(c) for c in rng.choice(f, size, replace=False)))
    return (int(rng.integers(f)),)


def _apply(
    out: np.ndarray,
    rng: np.random.Generator,
    kind: str,
    start: int,
    end: int,
    cols: tuple[int, ...],
    sigma: np.ndarray,
    step: np.ndarray,
) -> None:
    seg = slice(start, end + 1)
    n = end - start + 1
    sign = float(rng.choice([-1.0, 1.0]))
    for c in cols:
        x = out[seg, c]
        if kind == "spike":
            x += sign * rng.uniform(3, 6) * sigma[c]
        elif kind == "level_shift":
            x += sign * rng.uniform(1, 2) * sigma[c]
        elif kind == "group_shift":
            x += sign * rng.uniform(1, 1.5) * sigma[c]
        elif kind == "drift":
            x += sign * np.linspace(0, rng.uniform(2, 3) * sigma[c], n)
        elif kind == "stuck":
            x[:] = out[start - 1, c] if start else x[0]
        elif kind == "noise":
            x += rng.normal(0, 3 * step[c], n)
        elif kind == "gain":
            mean = out[:, c].mean()
            x[:] = mean + (x - mean) * rng.uniform(1.3, 1.6)
        elif kind == "dropout":
            x[:] = out[:, c].min()
        elif kind == "decorrelation":
            # the same feature, n rows from a distant stretch: plausible alone, out of step
            src = (start + len(out) // 2) % max(1, len(out) - n)
            x[:] = out[src : src + n, c]
