"""Offline training: normal-only history → autoencoder → calibrated threshold → bundle.

Windows are split by time (``training.history``): the first 70 % train the model, the next
15 % decide early stopping, the last 15 % (never seen by the optimiser) calibrate the
threshold. The model sees its inputs through the scaling that serves
(:class:`~streamae.core.scoring.InputScaler`), and the threshold and per-feature statistics
come from the :class:`~streamae.core.scoring.Scorer` the bundle will serve with. Every
variant shares this machinery (``training.pipeline``); what differs lives in the model's
``training_loss``. ``variant="auto"`` chooses the variant first, without labels
(``training.selection``), through the same steps per candidate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from streamae.core.config import TrainSettings
from streamae.core.fields import infer_fields
from streamae.training.export import (
    PARITY_TOLERANCE,
    export_onnx,
    onnx_reconstruct,
    parity,
    torch_reconstruct,
)
from streamae.training.history import field_choices
from streamae.training.pipeline import TRAINING_PLOT, TrainResult, fit_variant
from streamae.training.selection import select_and_fit

log = logging.getLogger(__name__)

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


def fit(
    frame: pd.DataFrame,
    out_dir: Path | str,
    cfg: TrainSettings,
    source: str = "history",
    progress: bool = True,
) -> TrainResult:
    """Train on a normal-only history frame (see ``readings.read_table``); write a bundle.
    The result holds the bundle, the training curve, the calibration scores and the trained
    PyTorch model.

    ``cfg.variant == "auto"`` selects the detector first
    (:func:`streamae.training.selection.select_and_fit`), keeping the fields ``cfg`` sets.
    """
    for f in infer_fields(frame, field_choices(cfg), source):
        if f.reason:
            log.warning("%s: column %s", source, f.describe())
    if cfg.variant == "auto":
        return select_and_fit(frame, out_dir, cfg, source, progress)
    return fit_variant(frame, out_dir, cfg, source, progress)
