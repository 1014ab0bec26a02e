"""Offline training: normal-only history → autoencoder → calibrated threshold → bundle.

Windows are split by time (``training.history``): the first 70 % train the model, the next
15 % decide early stopping, the last 15 % (never seen by the optimiser) calibrate the
threshold. The model sees its inputs through the scaling that serves
(:class:`~streamae.core.scoring.InputScaler`), and the threshold and per-feature statistics
come from the :class:`~streamae.core.scoring.Scorer` the bundle will serve with, built on
the exported graph before the bundle is written. Every variant shares this machinery; what
differs lives in the model's ``training_loss``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch

from streamae import __version__
from streamae.core.bundle import DECODER, Bundle, Manifest, sha256, write_bundle
from streamae.core.config import ConfigError, TrainSettings
from streamae.core.readings import DataError, feature_columns
from streamae.core.scoring import InputScaler, Scorer
from streamae.training.calibration import ThresholdRule, calibrate_scorer, score_summary
from streamae.training.export import (
    PARITY_TOLERANCE,
    export_decoder,
    export_onnx,
    onnx_reconstruct,
    parity,
    torch_reconstruct,
)
from streamae.training.history import History, Split, normal_history, split_by_time
from streamae.training.optimise import train_model

# the export helpers are part of this module's public face (the variant contract suite)
__all__ = [
    "PARITY_TOLERANCE",
    "TRAINING_PLOT",
    "TrainResult",
    "export_onnx",
    "fit",
    "onnx_reconstruct",
    "parity",
    "torch_reconstruct",
]

log = logging.getLogger(__name__)

MIN_WINDOWS = 50
TRAINING_PLOT = "training.png"  # beside the bundle's files, not part of its checksum


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, val_loss, lr
    calibration_scores: np.ndarray  # what the threshold was set on, as `streamae score` gives them


def fit(
    frame: pd.DataFrame,
    out_dir: Path | str,
    cfg: TrainSettings,
    source: str = "history",
    progress: bool = True,
) -> TrainResult:
    """Train on a normal-only history frame (see ``readings.read_table``); write a bundle."""
    out_dir = Path(out_dir)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: no CUDA device is available to PyTorch here")
    features, hist, split = _history(frame, cfg, source)
    windows = hist.windows
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_rows = (hist.readings.ts <= windows.end_ts[split.train].max()) & hist.normal_rows
    center, scale = _scaler(hist.readings.values[train_rows], cfg.loss)
    x = InputScaler(center, scale)(windows.data)
    model, history, extra = train_model(x[split.train], x[split.val], len(features), cfg, rng, progress)
    model_bytes = export_onnx(model, cfg.window, len(features))
    diff = parity(model, model_bytes, x[split.calib])
    if diff > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.2e} > {PARITY_TOLERANCE}")

    with torch.no_grad():
        code_size = int(model.encode(torch.from_numpy(x[:1])).shape[1])
    fields = _model_fields(cfg, features, center, scale, code_size)
    # the Scorer the bundle will serve with. Per-feature errors depend on neither field still
    # unknown (threshold, feature_error_scale): their held-out normal means (validation
    # windows, never optimised on) set the scale, and the scorer with it sets the threshold
    unscaled = Scorer(_unwritten(out_dir, model_bytes, fields, cfg.ewma_alpha), ["CPUExecutionProvider"])
    val_errors = unscaled.score(windows.data[split.val]).feature_errors
    fields["feature_error_scale"] = np.maximum(val_errors.mean(axis=0), 1e-12).tolist()
    scorer = Scorer(_unwritten(out_dir, model_bytes, fields, cfg.ewma_alpha), ["CPUExecutionProvider"])
    try:
        fields["threshold"], cal_scores = calibrate_scorer(
            scorer, windows.select(split.calib), ThresholdRule.of(cfg)
        )
    except ValueError as exc:
        raise DataError(
            f"{source}: threshold calibration on {int(split.calib.sum())} windows failed: {exc}"
        ) from None
    best = min(history, key=lambda h: h["val_loss"])
    fields["metrics"] = {
        "train_loss": best["train_loss"],
        "val_loss": best["val_loss"],
        **score_summary(cal_scores),
        "onnx_parity_max_abs_diff": diff,
        "epochs": float(len(history)),
        **extra,
    }
    fields["training"] = _training_record(cfg, split, source, len(hist.readings), hist.excluded, history)
    fields["versions"] = {"streamae": __version__, "torch": torch.__version__, "onnxruntime": ort.__version__}
    extras = {DECODER: export_decoder(model, code_size)} if cfg.variant == "variational" else {}
    bundle = write_bundle(out_dir, model_bytes, fields, extras=extras)
    _plot_training(history, out_dir, cfg.variant, source)
    t = bundle.manifest.threshold
    log.info("bundle written to %s (threshold %.4g by %s)", out_dir, t.value, t.method)
    return TrainResult(bundle, history, cal_scores)


def _history(frame: pd.DataFrame, cfg: TrainSettings, source: str) -> tuple[list[str], History, Split]:
    """Features, normal windows and their time split; a DataError when there is too little."""
    features = feature_columns(frame)
    if not features:
        raise DataError(f"{source}: no numeric feature columns")
    hist = normal_history(frame, features, cfg.window, cfg.stride, source)
    if hist.excluded:
        log.info("%s: %d windows touch labelled rows and are left out", source, hist.excluded)
    n = len(hist.windows)
    if n < MIN_WINDOWS:
        raise DataError(f"{source}: only {n} windows of {cfg.window} readings; need {MIN_WINDOWS}")
    split = split_by_time(hist.windows)
    if min(split.train.sum(), split.val.sum(), split.calib.sum()) < 5:
        raise DataError(f"{source}: too little history to split into train/validation/calibration")
    return features, hist, split


def _plot_training(history: list[dict[str, float]], out_dir: Path, variant: str, source: str) -> None:
    from streamae.evaluation.plots import plot_training  # matplotlib only once a bundle exists

    plot_training(history, out_dir / TRAINING_PLOT, f"{variant} on {Path(source).name}")


def _model_fields(
    cfg: TrainSettings, features: list[str], center: np.ndarray, scale: np.ndarray, code_size: int
) -> dict[str, Any]:
    """The manifest fields that describe the model and its inputs."""
    return {
        "model_version": f"{cfg.variant}-{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S}",
        "variant": cfg.variant,
        "features": features,
        "window": cfg.window,
        "stride": cfg.stride,
        "scaler": {"mean": center.tolist(), "scale": scale.tolist()},
        "loss": cfg.loss,
        "code_size": code_size,
        "score": {
            "time_weighting": cfg.time_weighting,
            "half_life": cfg.half_life,
            "feature_norm": cfg.feature_norm,
            "feature_pool": cfg.feature_pool,
        },
    }


def _unwritten(path: Path, model_bytes: bytes, fields: dict[str, Any], ewma_alpha: float) -> Bundle:
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


def _training_record(
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


def _scaler(values: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(center, scale)``: standardisation, or min-max to [0, 1] for BCE."""
    if loss == "bce":
        lo, hi = values.min(axis=0).astype(np.float64), values.max(axis=0).astype(np.float64)
        return lo, np.where(hi - lo > 1e-8, hi - lo, 1.0)
    std = values.std(axis=0, dtype=np.float64)
    return values.mean(axis=0, dtype=np.float64), np.where(std > 1e-8, std, 1.0)
