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
from collections.abc import Iterator
from contextlib import contextmanager
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
from streamae.training.models import Autoencoder
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
    """Train on a normal-only history frame (see ``readings.read_table``); write a bundle.

    ``cfg.variant == "auto"`` selects the detector first
    (:func:`streamae.training.selection.select_and_fit`), keeping the fields ``cfg`` sets.
    """
    if cfg.variant == "auto":
        from streamae.training.selection import select_and_fit  # selection builds on this module

        return select_and_fit(frame, out_dir, cfg, source, progress)
    check_device(cfg)
    prep = prepare(frame, cfg, source)
    trained = train_exported(prep, cfg, progress)
    calibrated = calibrate_trained(prep, trained, cfg, Path(out_dir), source)
    return write_trained(prep, trained, calibrated, cfg, out_dir, source)


def check_device(cfg: TrainSettings) -> None:
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: no CUDA device is available to PyTorch here")


@dataclass(frozen=True)
class Prepared:
    """The normal history cut into windows of one length: features, windows, their time
    split, the training readings, the scaler set on them, and the windows in model units."""

    features: list[str]
    hist: History
    split: Split
    train_rows: np.ndarray  # bool per reading: normal and no later than the last training window
    center: np.ndarray
    scale: np.ndarray
    x: np.ndarray  # every window, scaled (float32)


def prepare(frame: pd.DataFrame, cfg: TrainSettings, source: str) -> Prepared:
    """Windows of ``cfg.window`` readings, split by time and scaled as the bundle will scale."""
    features, hist, split = _history(frame, cfg, source)
    windows = hist.windows
    train_rows = (hist.readings.ts <= windows.end_ts[split.train].max()) & hist.normal_rows
    center, scale = _scaler(hist.readings.values[train_rows], cfg.loss)
    x = InputScaler(center, scale)(windows.data)
    return Prepared(features, hist, split, train_rows, center, scale, x)


@dataclass(frozen=True)
class Trained:
    """A model fitted to the training windows and exported (ONNX checked against PyTorch)."""

    model: Autoencoder
    model_bytes: bytes
    history: list[dict[str, float]]
    extra: dict[str, float]  # metrics of the variant's own (pca: explained_variance)
    parity: float
    code_size: int


def train_exported(prep: Prepared, cfg: TrainSettings, progress: bool) -> Trained:
    """Fit ``cfg.variant`` (early stopping on the validation windows) and export it."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    x, split, n_features = prep.x, prep.split, len(prep.features)
    with torch_threads(cfg.threads):
        model, history, extra = train_model(x[split.train], x[split.val], n_features, cfg, rng, progress)
        model_bytes = export_onnx(model, cfg.window, n_features)
        diff = parity(model, model_bytes, x[split.calib])
        with torch.no_grad():
            code_size = int(model.encode(torch.from_numpy(x[:1])).shape[1])
    if diff > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.2e} > {PARITY_TOLERANCE}")
    return Trained(model, model_bytes, history, extra, diff, code_size)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch's CPU threads set to ``n`` for a while (0: left as they are). On two busy cores,
    two threads trained these models 15-35 times slower than one (docs/models.md)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Calibrated:
    """The manifest fields of a trained model scored as ``cfg`` says (score spec, smoothing,
    post-processing), its per-feature error scale and threshold, and the calibration scores."""

    fields: dict[str, Any]
    scores: np.ndarray

    def scorer(self, path: Path, model_bytes: bytes) -> Scorer:
        """The :class:`Scorer` the bundle will serve with, threshold included."""
        ewma_alpha = self.fields["threshold"]["ewma_alpha"]
        return Scorer(_unwritten(path, model_bytes, self.fields, ewma_alpha), ["CPUExecutionProvider"])


def calibrate_trained(
    prep: Prepared, trained: Trained, cfg: TrainSettings, out_dir: Path, source: str
) -> Calibrated:
    """Per-feature error scale (validation windows) and threshold (calibration windows) of a
    trained model, both set through the :class:`Scorer` the bundle will serve with."""
    windows, split, model_bytes = prep.hist.windows, prep.split, trained.model_bytes
    fields = _model_fields(cfg, prep.features, prep.center, prep.scale, trained.code_size)
    fields["postprocess"] = _postprocess(cfg, prep.hist.readings.values[prep.train_rows])
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
    return Calibrated(fields, cal_scores)


def write_trained(
    prep: Prepared,
    trained: Trained,
    calibrated: Calibrated,
    cfg: TrainSettings,
    out_dir: Path | str,
    source: str,
    selection: dict[str, Any] | None = None,
) -> TrainResult:
    """Write the bundle of a trained, calibrated model (and its training curve beside it);
    ``selection`` is the manifest record of the search that chose it, if one did."""
    out_dir = Path(out_dir)
    history = trained.history
    fields = dict(calibrated.fields)
    best = min(history, key=lambda h: h["val_loss"])
    fields["metrics"] = {
        "train_loss": best["train_loss"],
        "val_loss": best["val_loss"],
        **score_summary(calibrated.scores),
        "onnx_parity_max_abs_diff": trained.parity,
        "epochs": float(len(history)),
        **trained.extra,
    }
    hist = prep.hist
    fields["training"] = _training_record(cfg, prep.split, source, len(hist.readings), hist.excluded, history)
    fields["versions"] = {"streamae": __version__, "torch": torch.__version__, "onnxruntime": ort.__version__}
    if selection is not None:
        fields["selection"] = selection
    variational = cfg.variant == "variational"
    extras = {DECODER: export_decoder(trained.model, trained.code_size)} if variational else {}
    bundle = write_bundle(out_dir, trained.model_bytes, fields, extras=extras)
    _plot_training(history, out_dir, cfg.variant, source)
    t = bundle.manifest.threshold
    log.info("bundle written to %s (threshold %.4g by %s)", out_dir, t.value, t.method)
    return TrainResult(bundle, history, calibrated.scores)


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


def _postprocess(cfg: TrainSettings, train_values: np.ndarray) -> dict[str, Any]:
    """The manifest's streaming post-processing: the stages ``cfg`` turns on, and the range of
    the training readings that seeds the range rule."""
    return {
        "likelihood": cfg.likelihood,
        "sparse": cfg.sparse,
        "record_half_life": cfg.record_half_life,
        "range_widen": cfg.range_widen,
        "range_lo": train_values.min(axis=0).astype(float).tolist(),
        "range_hi": train_values.max(axis=0).astype(float).tolist(),
        "quiet_windows": cfg.quiet_windows,
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
