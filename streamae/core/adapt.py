"""Streaming normalisation: each key's readings re-centred (and re-scaled) to the training
distribution before the model sees them, as the bundle's ``adapt`` section says.

Per key, an exponentially weighted mean and second moment of each feature (in units of the
training readings: ``z = (x - ref_mean) / ref_std``; weights halving every ``half_life``
windows of the key, i.e. readings at stride 1) learn from the newest reading of every
window that was **not flagged** — the guard: an ongoing anomaly is not learned as normal.
A window's readings are corrected to
``ref_mean + ref_std * (z - m) / s`` with ``m`` the key's running mean and ``s`` its running
spread (clipped to ``SCALE_LIMITS`` of the training spread; 1 without ``rescale``), both as
they stood at the start of the window's **block**: the key's windows are counted, and the
statistics a block of ``block`` windows is scored with are those learned from every window
before it. So a block's windows are scored together, and the scores do not depend on how
the stream is cut into micro-batches: :func:`levels` says which block of its key each window
of a batch falls in, and :meth:`Scorer.stream <streamae.core.scoring.Scorer.stream>` scores
one block level at a time (usually one), learning from each level's flags before the next.

Every key starts at the training statistics (no correction). The state per key is one
JSON-ready list ``[n, m_a…, s_a…, m…, q…]`` (windows seen; applied mean and spread; running
mean and second moment), the ``adapt`` of the stream's state (``core/stream_state.py``), so it
is saved with the alert state at each commit, restored after a restart and forgotten with idle
keys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from streamae.core.groups import ranks
from streamae.core.manifest import AdaptSpec

#: the running spread, relative to the training spread, is clipped to these bounds
SCALE_LIMITS = (0.25, 4.0)


def is_active(spec: AdaptSpec) -> bool:
    return spec.half_life is not None


class Adapter:
    """The normalisation state of the keys of one batch of windows (in stream order), taken
    from ``state`` (key -> row) on construction and written back by :meth:`save`."""

    def __init__(self, spec: AdaptSpec, keys: np.ndarray, state: dict[str, list[float]]) -> None:
        assert spec.half_life is not None
        self.spec = spec
        self.decay = 0.5 ** (1.0 / spec.half_life)
        self.ref_mean = np.asarray(spec.ref_mean, dtype=np.float64)
        self.ref_std = np.asarray(spec.ref_std, dtype=np.float64)
        f = len(self.ref_mean)
        codes, uniques = pd.factorize(np.asarray(keys, dtype=object))
        self.codes: np.ndarray = codes
        self.names = [str(u) for u in uniques]
        fresh = [0.0, *([0.0] * f), *([1.0] * f), *([0.0] * f), *([1.0] * f)]
        table = np.array([state.get(name, fresh) for name in self.names], dtype=np.float64).reshape(
            -1, 1 + 4 * f
        )
        self.n = table[:, 0].astype(np.int64)
        self.m_applied, self.s_applied, self.m, self.q = (
            table[:, 1 + i * f : 1 + (i + 1) * f] for i in range(4)
        )
        self.levels = levels(codes, self.n, spec.block)

    def correct(self, data: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Windows ``data`` (``(k, W, F)``, the batch's windows ``rows``) in training units."""
        c = self.codes[rows]
        m, s = self.m_applied[c][:, None, :], self.s_applied[c][:, None, :]
        z = (data.astype(np.float64) - self.ref_mean) / self.ref_std
        out: np.ndarray = (self.ref_mean + self.ref_std * ((z - m) / s)).astype(np.float32)
        return out

    def learn(self, rows: np.ndarray, newest: np.ndarray, flagged: np.ndarray) -> None:
        """Learn from the newest readings ``(k, F)`` of the windows ``rows`` (one block level,
        stream order) that were not ``flagged``; a key that completes a block applies what it
        has learned to its next one."""
        codes = self.codes[rows]
        z = (newest.astype(np.float64) - self.ref_mean) / self.ref_std
        keep = ~np.asarray(flagged, dtype=bool)
        # a scan over the position within each key, vectorised across keys: every reading is
        # learned by the same operations whatever the batches, so the results are identical
        rank = ranks(codes)
        by_rank = np.argsort(rank, kind="stable")
        bounds = np.flatnonzero(np.diff(rank[by_rank])) + 1
        d = self.decay
        for step in np.split(by_rank, bounds):
            step = step[keep[step]]
            c, x = codes[step], z[step]
            self.m[c] = d * self.m[c] + (1.0 - d) * x
            self.q[c] = d * self.q[c] + (1.0 - d) * (x * x)
        keys, sizes = np.unique(codes, return_counts=True)
        self.n[keys] += sizes
        done = keys[self.n[keys] % self.spec.block == 0]
        self.m_applied[done] = self.m[done]
        if self.spec.rescale:
            spread = np.sqrt(np.maximum(self.q[done] - self.m[done] ** 2, 0.0))
            self.s_applied[done] = np.clip(spread, *SCALE_LIMITS)

    def save(self, state: dict[str, list[float]]) -> None:
        rows = np.column_stack([self.n, self.m_applied, self.s_applied, self.m, self.q]).tolist()
        for name, row in zip(self.names, rows):
            row[0] = int(row[0])
            state[name] = row


def levels(codes: np.ndarray, seen: np.ndarray, block: int) -> np.ndarray:
    """For windows of keys ``codes`` in stream order, whose keys have seen ``seen`` windows
    before: how many block boundaries of its key lie between the batch's start and each
    window (0: the block its key is in now)."""
    start = seen[codes]
    out: np.ndarray = (start + ranks(codes)) // block - start // block
    return out
