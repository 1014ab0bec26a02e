"""How a window's reconstruction errors become its score: the bundle's ``score`` section.

A window's squared reconstruction errors ``(W, F)`` become per-feature errors by a weighted
mean over time — even weights, or ``recent``: halving every ``half_life`` readings back from
the newest, so a window stamped by its last reading reflects that reading — plus, with
``reading_residual``, the newest reading's weighted cross-sensor residual; the score pools
them across features (mean or max), optionally after dividing each by its held-out normal
mean (``feature_norm``: a noisy sensor does not drown a quiet one). These are the host
formulas: the scoring graph (``score_graph.py``) computes the same inside ONNX Runtime, and
tests hold it to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamae.core.manifest import ScoreSpec


def feature_errors(x: np.ndarray, recon: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Squared error per feature averaged over the time axis, evenly or with ``weights``
    (``(W,)``, summing to 1): ``(m, W, F) -> (m, F)``. The definition: the scoring graph
    (``score_graph.py``) computes the same inside ONNX Runtime, and tests hold it to this."""
    sq = np.square(recon - x)
    out: np.ndarray = sq.mean(axis=1) if weights is None else np.einsum("mwf,w->mf", sq, weights)
    return out


@dataclass(frozen=True, eq=False)  # array fields: no element-wise __eq__
class ReadingResidual:
    """The cross-sensor residual of a window's newest reading: its part off the principal
    axes of single training readings, squared per feature and weighted so that, on held-out
    normal windows, it is as large as the window error it is added to (``ScoreSpec``)."""

    center: np.ndarray  # (F,) float32
    components: np.ndarray  # (F, k) float32
    weight: np.ndarray  # (F,) float32

    @classmethod
    def of(cls, spec: ScoreSpec) -> ReadingResidual | None:
        if not spec.reading_residual:
            return None
        return cls(
            np.asarray(spec.residual_center, np.float32),
            np.asarray(spec.residual_components, np.float32),
            np.asarray(spec.residual_weight, np.float32),
        )

    def squared(self, newest: np.ndarray) -> np.ndarray:
        """Unweighted squared residuals ``(m, F)`` of readings ``(m, F)`` in model units."""
        d = newest - self.center
        out: np.ndarray = np.square(d - (d @ self.components) @ self.components.T)
        return out

    def add_to(self, errors: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Per-feature errors ``(m, F)`` of windows ``x`` ``(m, W, F)`` with the residual added:
        the host formula of what the scoring graph computes."""
        out: np.ndarray = errors + self.weight * self.squared(x[:, -1, :])
        return out


def time_weights(spec: ScoreSpec, window: int) -> np.ndarray | None:
    """Weights over a window's readings, oldest first (None: even weights)."""
    if spec.time_weighting == "uniform":
        return None
    half_life = spec.half_life or max(1.0, window / 4)
    w = 0.5 ** (np.arange(window - 1, -1, -1) / half_life)
    out: np.ndarray = (w / w.sum()).astype(np.float32)
    return out


def pool_features(errors: np.ndarray, spec: ScoreSpec, normal_mean: np.ndarray) -> np.ndarray:
    """Window scores ``(m,)`` from per-feature errors ``(m, F)`` as ``spec`` says."""
    e = errors / normal_mean if spec.feature_norm else errors
    out: np.ndarray = (
        e.max(axis=1).astype(np.float64) if spec.feature_pool == "max" else e.mean(axis=1, dtype=np.float64)
    )
    return out
