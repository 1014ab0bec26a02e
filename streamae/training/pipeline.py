"""One model's way from a normal-only history to a bundle: the steps ``fit`` runs for a named
variant and label-free selection (``selection``) runs per candidate.

``history.prepare`` (windows, split, scaling) → :func:`train_exported` → :func:`calibrate_trained`
→ :func:`write_trained` (the manifest's fields from ``manifest_fields``); :func:`fit_variant`
chains them. The threshold and per-feature statistics come from the
:class:`~streamae.core.scoring.Scorer` the bundle will serve with, built on the exported graph
before the bundle is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch

from streamae import __version__
from streamae.core.bundle import DECODER, Bundle, write_bundle
from streamae.core.config import ConfigError, TrainSettings
from streamae.core.readings import DataError
from streamae.core.scoring import Scorer
from streamae.training.calibration import ThresholdRule, calibrate_scorer, score_summary
from streamae.training.export import (
    PARITY_TOLERANCE,
    export_decoder,
    export_onnx,
    parity,
)
from streamae.training.history import Prepared, prepare
from streamae.training.manifest_fields import (
    adapt,
    model_fields,
    postprocess,
    reading_residual,
    training_record,
    unwritten,
)
from streamae.training.models import Autoencoder
from streamae.training.optimise import train_model

log = logging.getLogger(__name__)

TRAINING_PLOT = "training.png"  # beside the bundle's files, not part of its checksum


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, val_loss, lr
    calibration_scores: np.ndarray  # what the threshold was set on, as `streamae score` gives them
    model: Autoencoder  # the PyTorch model whose weights the bundle's graph holds


def fit_variant(
    frame: pd.DataFrame, out_dir: Path | str, cfg: TrainSettings, source: str, progress: bool
) -> TrainResult:
    """Train, calibrate and write the bundle of the one variant ``cfg`` names."""
    check_device(cfg)
    prep = prepare(frame, cfg, source)
    check_features(cfg, prep.features, source)
    trained = train_exported(prep, cfg, progress)
    calibrated = calibrate_trained(prep, trained, cfg, Path(out_dir), source)
    return write_trained(prep, trained, calibrated, cfg, out_dir, source)


def check_device(cfg: TrainSettings) -> None:
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: no CUDA device is available to PyTorch here")


def check_features(cfg: TrainSettings, features: list[str], source: str) -> None:
    """Refuse, before any training, settings the history's features cannot serve."""
    if cfg.reading_residual and len(features) < 2:
        raise ConfigError(f"{source}: --reading-residual needs 2 or more features, there is 1")


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
        model, history, extra = train_model(
            x[split.train], x[split.val], n_features, cfg, rng, progress, prep.encoding.groups
        )
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
        return Scorer(unwritten(path, model_bytes, self.fields, ewma_alpha), ["CPUExecutionProvider"])


def calibrate_trained(
    prep: Prepared, trained: Trained, cfg: TrainSettings, out_dir: Path, source: str
) -> Calibrated:
    """Per-feature error scale (validation windows) and threshold (calibration windows) of a
    trained model, both set through the :class:`Scorer` the bundle will serve with."""
    windows, split, model_bytes = prep.hist.windows, prep.split, trained.model_bytes
    fields = model_fields(prep, cfg, trained.code_size)
    fields["postprocess"] = postprocess(cfg, prep.train_values)
    fields["adapt"] = adapt(cfg, prep.train_values)
    # the Scorer the bundle will serve with. Per-feature errors depend on neither field still
    # unknown (threshold, feature_error_scale): their held-out normal means (validation
    # windows, never optimised on) set the scale, and the scorer with it sets the threshold
    unscaled = Scorer(unwritten(out_dir, model_bytes, fields, cfg.ewma_alpha), ["CPUExecutionProvider"])
    val_errors = unscaled.score(windows.data[split.val]).feature_errors
    if cfg.reading_residual:
        fields["score"].update(reading_residual(prep, val_errors))
        unscaled = Scorer(unwritten(out_dir, model_bytes, fields, cfg.ewma_alpha), ["CPUExecutionProvider"])
        val_errors = unscaled.score(windows.data[split.val]).feature_errors
    fields["feature_error_scale"] = np.maximum(val_errors.mean(axis=0), 1e-12).tolist()
    scorer = Scorer(unwritten(out_dir, model_bytes, fields, cfg.ewma_alpha), ["CPUExecutionProvider"])
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
    fields["training"] = training_record(cfg, prep.split, source, len(hist.readings), hist.excluded, history)
    fields["versions"] = {"streamae": __version__, "torch": torch.__version__, "onnxruntime": ort.__version__}
    if selection is not None:
        fields["selection"] = selection
    variational = cfg.variant == "variational"
    extras = {DECODER: export_decoder(trained.model, trained.code_size)} if variational else {}
    bundle = write_bundle(out_dir, trained.model_bytes, fields, extras=extras)
    _plot_training(history, out_dir, cfg.variant, source)
    t = bundle.manifest.threshold
    log.info("bundle written to %s (threshold %.4g by %s)", out_dir, t.value, t.method)
    return TrainResult(bundle, history, calibrated.scores, trained.model)


def _plot_training(history: list[dict[str, float]], out_dir: Path, variant: str, source: str) -> None:
    from streamae.evaluation.plots import plot_training  # matplotlib only once a bundle exists

    plot_training(history, out_dir / TRAINING_PLOT, f"{variant} on {Path(source).name}")
