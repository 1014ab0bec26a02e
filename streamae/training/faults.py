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
``intermittent``    one feature drops to its normal minimum in bursts of 1–5 readings, 2–15
                    normal readings apart, for the whole episode (a loose contact, a flapping
                    link): labelled throughout, as an incident is
``lag``             one feature runs 3–30 readings behind the others (a buffered feed, a
                    clock offset): every value plausible, the timing wrong
==================  =====================================================================

Categorical fields (transactions) get one more kind, injected beside those of the numeric
fields (:func:`inject_categories`):

==================  =====================================================================
``new_category``    1–3 readings of one categorical field take a value the key never has in
                    its normal readings (a country the account never uses, a new merchant
                    category), every other field as it was
==================  =====================================================================

Durations are drawn log-uniformly (a fault is as likely to last 10–20 readings as 100–200;
spikes 1–3), at most a quarter of the series.
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
    "intermittent",
    "lag",
)
# readings per fault, drawn log-uniformly (every time scale alike: a fault as likely to last
# 10-20 readings as 100-200); at most a quarter of the series, so that several fit
_DURATION = {
    "spike": (1, 3),
    "level_shift": (10, 200),
    "drift": (20, 300),
    "stuck": (10, 200),
    "noise": (10, 200),
    "gain": (10, 200),
    "dropout": (3, 60),
    "decorrelation": (20, 200),
    "group_shift": (10, 200),
    "intermittent": (20, 200),
    "lag": (20, 200),
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
    the first), the per-row labels (1 inside a fault) and the faults themselves.

    Kinds take turns in the order given; a fault too long for the rows still free is
    skipped (fewer faults come back). Every magnitude, level and replayed stretch comes
    from the *normal* ``values``, never from rows an earlier fault changed, and faults go
    to features that vary (a constant feature cannot show most of them).
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; choose from {', '.join(KINDS)}")
    normal = np.asarray(values, dtype=np.float64)
    out = normal.copy()
    n, f = out.shape
    labels = np.zeros(n, dtype=np.int8)
    faults: list[Fault] = []
    if n == 0 or f == 0 or not len(kinds):
        return out, labels, faults
    sigma = normal.std(axis=0)
    live = np.flatnonzero(sigma > 1e-9)
    if not len(live):  # nothing varies: no fault would show
        return out, labels, faults
    sigma = np.maximum(sigma, 1e-9)
    step = np.maximum(np.abs(np.diff(normal, axis=0)).mean(axis=0) if n > 1 else sigma, 1e-9)
    free = np.ones(n, dtype=bool)
    free[:margin] = False
    for i in range(n_faults):
        kind = kinds[i % len(kinds)]
        length = _duration(rng, kind, n)
        starts = _free_starts(free, length)
        if not len(starts):
            continue
        start = int(rng.choice(starts))
        end = start + length - 1
        cols = _columns(rng, kind, live)
        _apply(out, normal, rng, kind, start, end, cols, sigma, step)
        labels[start : end + 1] = 1
        free[max(0, start - margin) : end + 1 + margin] = False
        faults.append(Fault(kind, start, end, cols))
    return out, labels, faults


def _duration(rng: np.random.Generator, kind: str, n: int) -> int:
    lo, hi = _DURATION[kind]
    hi = max(lo, min(hi, n // 4))
    if hi <= lo:
        return lo
    return min(hi, round(float(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))))


def _free_starts(free: np.ndarray, length: int) -> np.ndarray:
    """Rows where a fault of ``length`` fits entirely on free rows."""
    if length > len(free):
        return np.empty(0, dtype=np.int64)
    blocked = np.concatenate([[0], np.cumsum(~free)])
    ok = blocked[length:] - blocked[:-length] == 0
    return np.flatnonzero(ok)


def _columns(rng: np.random.Generator, kind: str, live: np.ndarray) -> tuple[int, ...]:
    """The feature(s) a fault of ``kind`` changes, among the ``live`` (varying) ones."""
    if kind == "group_shift" and len(live) > 1:
        size = int(rng.integers(2, min(3, len(live)) + 1))
        return tuple(sorted(int(c) for c in rng.choice(live, size, replace=False)))
    return (int(rng.choice(live)),)


def _apply(
    out: np.ndarray,
    normal: np.ndarray,
    rng: np.random.Generator,
    kind: str,
    start: int,
    end: int,
    cols: tuple[int, ...],
    sigma: np.ndarray,
    step: np.ndarray,
) -> None:
    """Change rows ``start..end`` of ``cols`` in ``out``; levels come from ``normal``."""
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
            x[:] = normal[start - 1, c] if start else normal[start, c]
        elif kind == "noise":
            x += rng.normal(0, 3 * step[c], n)
        elif kind == "gain":
            mean = normal[:, c].mean()
            x[:] = mean + (x - mean) * rng.uniform(1.3, 1.6)
        elif kind == "dropout":
            x[:] = normal[:, c].min()
        elif kind == "decorrelation":
            x[:] = _elsewhere(rng, normal[:, c], start, n)
        elif kind == "intermittent":
            x[_bursts(rng, n)] = normal[:, c].min()
        elif kind == "lag":
            delay = int(rng.integers(3, 31))
            x[:] = normal[np.maximum(np.arange(start, end + 1) - delay, 0), c]


def _bursts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows of an intermittent fault: bursts of 1–5 from the first row on, 2–15 apart."""
    hit = np.zeros(n, dtype=bool)
    i = 0
    while i < n:
        burst = int(rng.integers(1, 6))
        hit[i : i + burst] = True
        i += burst + int(rng.integers(2, 16))
    return hit


def _elsewhere(rng: np.random.Generator, column: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` normal values of ``column`` from a stretch that does not overlap rows
    ``start..start+n-1`` (plausible alone, out of step with the other features); the stretch
    itself reversed in time when the series is too short for another."""
    src = np.flatnonzero(np.abs(np.arange(len(column) - n + 1) - start) >= n)
    if not len(src):
        return column[start : start + n][::-1].copy()
    lo = int(rng.choice(src))
    return column[lo : lo + n].copy()


def inject_categories(
    codes: np.ndarray,
    sizes: Sequence[int],
    rng: np.random.Generator,
    n_faults: int,
    labels: np.ndarray,
    margin: int = 0,
) -> tuple[np.ndarray, int]:
    """``new_category`` faults in a series' category codes ``(n, C)`` (field ``c`` has codes
    ``0..sizes[c]-1``) on rows ``labels`` leaves free (and ``margin`` rows around them);
    ``labels`` is updated in place. Returns the faulted codes and the faults injected."""
    out = np.asarray(codes).copy()
    n = len(out)
    free = np.ones(n, dtype=bool)
    free[:margin] = False
    for at in np.flatnonzero(labels).tolist():
        free[max(0, at - margin) : at + margin + 1] = False
    made = 0
    for _ in range(n_faults):
        c = int(rng.integers(len(sizes)))
        unused = np.setdiff1d(np.arange(sizes[c]), out[:, c])
        length = _duration(rng, "spike", n)
        starts = _free_starts(free, length)
        if not len(unused) or not len(starts):
            continue
        start = int(rng.choice(starts))
        out[start : start + length, c] = rng.choice(unused)
        labels[start : start + length] = 1
        free[max(0, start - margin) : start + length + margin] = False
        made += 1
    return out, made
