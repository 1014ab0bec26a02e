"""The manifest fields a training run writes, and the bundle they make before it is written.

:func:`model_fields` (the model and its inputs), :func:`postprocess` (streaming
post-processing) and :func:`training_record` (settings, split, data and curve) fill a new
bundle's manifest; :func:`unwritten` turns fields still missing their threshold into a
:class:`~streamae.core.bundle.Bundle` in memory, for the :class:`Scorer` that calibrates it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamae.core.bundle import Bundle, sha256
from streamae.core.config import TrainSettings
from streamae.core.manifest import Manifest, PostProcessing, WindowScore
from streamae.core.scoring import InputScaler
from streamae.core.window_score import ReadingResidual
from streamae.training.history import Prepared, Split


def model_fields(prep: Prepared, cfg: TrainSettings, code_size: int) -> dict[str, Any]:
    """The manifest fields that describe the model and its inputs (``fields``: every column
    of the file, when some are not the model's numeric features)."""
    features, center, scale = prep.features, prep.center, prep.scale
    every_one_a_feature = all(f.kind == "numeric" for f in prep.fields)
    context = prep.encoding.context
    return {
        "fields": [] if every_one_a_feature else [f.model_dump() for f in prep.fields],
        "context": None if context is None else context.model_dump(),
        "model_version": f"{cfg.variant}-{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S}",
        "variant": cfg.variant,
        "features": features,
        "window": cfg.window,
        "stride": cfg.stride,
        "scaler": {"mean": center.tolist(), "scale": scale.tolist()},
        "loss": cfg.loss,
        "code_size": code_size,
        # the residual joins once it is fitted (reading_residual below)
        "score": {f: getattr(cfg, f) for f in WindowScore.model_fields if f != "reading_residual"},
    }


def reading_residual(prep: Prepared, val_errors: np.ndarray) -> dict[str, Any]:
    """The score fields of the cross-sensor residual: principal axes of the training readings,
    and weights that make it as large as the window errors ``val_errors`` ``(m, F)`` of the
    validation windows."""
    values = prep.train_values
    train = InputScaler(prep.center, prep.scale)(values[:, None, :])[:, 0, :]
    axes = residual_axes(train.astype(np.float64))
    unit = ReadingResidual(
        np.asarray(axes["residual_center"], np.float32),
        np.asarray(axes["residual_components"], np.float32),
        np.ones(len(prep.features), np.float32),
    )
    residuals = unit.squared(prep.x[prep.split.val][:, -1, :])
    return {"reading_residual": True, **axes, "residual_weight": residual_weight(val_errors, residuals)}


RESIDUAL_VARIANCE = 0.95  # the principal axes kept: those explaining this share of the variance


def residual_axes(train_readings: np.ndarray) -> dict[str, Any]:
    """Centre and principal axes ``(F, k)`` of single training readings in model units: the
    fewest axes explaining :data:`RESIDUAL_VARIANCE` of their variance, at least one and
    fewer than ``F`` (all ``F`` would leave no residual)."""
    n = train_readings.shape[1]
    if n < 2:
        raise ValueError("a cross-sensor residual needs 2 or more features")
    center = train_readings.mean(axis=0)
    _, sv, vt = np.linalg.svd(train_readings - center, full_matrices=False)
    share = np.cumsum(sv**2) / max(float(np.sum(sv**2)), 1e-300)
    k = int(np.clip(np.searchsorted(share, RESIDUAL_VARIANCE) + 1, 1, n - 1))
    return {
        "residual_center": center.astype(float).tolist(),
        "residual_components": vt[:k].T.astype(float).tolist(),
    }


def residual_weight(window_errors: np.ndarray, residuals: np.ndarray) -> list[float]:
    """Per feature, the held-out normal mean window error over the mean squared residual, so
    both parts weigh alike. The residual's mean is floored at a thousandth of the error's: a
    feature the kept axes explain almost exactly would otherwise get a weight so large that
    rounding in production decided its score."""
    err = np.maximum(window_errors.mean(axis=0, dtype=np.float64), 1e-12)
    res = np.maximum(residuals.mean(axis=0, dtype=np.float64), 1e-3 * err)
    out: list[float] = (err / res).tolist()
    return out


def postprocess(cfg: TrainSettings, train_values: np.ndarray) -> dict[str, Any]:
    """The manifest's streaming post-processing: the stages ``cfg`` turns on, and the range of
    the training readings that seeds the range rule."""
    return {
        **{f: getattr(cfg, f) for f in PostProcessing.model_fields},
        "range_lo": train_values.min(axis=0).astype(float).tolist(),
        "range_hi": train_values.max(axis=0).astype(float).tolist(),
    }


def adapt(cfg: TrainSettings, train_values: np.ndarray) -> dict[str, Any]:
    """The manifest's streaming normalisation: off unless ``cfg.adapt.half_life`` is set, and
    the training readings' per-feature mean and spread it maps each key's readings back to."""
    std = train_values.std(axis=0)
    return {
        **cfg.adapt.model_dump(),
        "ref_mean": train_values.mean(axis=0).astype(float).tolist(),
        "ref_std": np.where(std > 0, std, 1.0).astype(float).tolist(),
    }


def training_record(
    cfg: TrainSettings,
    split: Split,
    source: str,
    readings: int,
    excluded: int,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """The manifest's ``training`` section: settings, split, data and curve."""
    return {
        **cfg.model_dump(),
        "windows": {
            "train": int(split.train.sum()),
            "val": int(split.val.sum()),
            "calibration": int(split.calib.sum()),
        },
        # re-cutting the history's rows after this time gives exactly the calibration windows
        "calibration_after_ts": split.calibration_after,
        "source": source,
        "readings": readings,
        "excluded_labelled_windows": excluded,
        "history": history,
    }


def unwritten(path: Path, model_bytes: bytes, fields: dict[str, Any], ewma_alpha: float) -> Bundle:
    """The bundle about to be written, in memory, for a :class:`Scorer`: its threshold
    (only ``ewma_alpha`` is known, and scores do not depend on the rest) is a placeholder,
    and so is the per-feature error scale until ``fields`` has it."""
    manifest = Manifest.model_validate(
        {
            "threshold": {"value": 1.0, "ewma_alpha": ewma_alpha, "calibration_windows": 1},
            "feature_error_scale": [1.0] * len(fields["features"]),
            **fields,
            "created_at": datetime.now(timezone.utc),
            "checksum": sha256(model_bytes),
        }
    )
    return Bundle(path, manifest, model_bytes)
