"""Normal history → windows for fitting and calibration.

"Normal-only" history may still carry labelled incidents: windows touching a labelled row
are left out of training and calibration rather than trusting the caller to have removed
them. Windows are split by time, so the optimiser never sees the windows that decide
early stopping or set the threshold. :func:`prepare` does all of it for one window length
and scales the windows as the bundle will scale them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.core.config import TrainSettings
from streamae.core.encoding import Context, Encoding
from streamae.core.fields import FieldChoices, InputField, infer_fields
from streamae.core.readings import DataError, Readings, frame_to_readings
from streamae.core.scoring import InputScaler
from streamae.core.windows import Windows, WindowStore

log = logging.getLogger(__name__)

TRAIN_SHARE, VALIDATION_SHARE = 0.70, 0.15  # the calibration windows are the rest
MIN_WINDOWS = 50


@dataclass(frozen=True)
class History:
    """The readings of a history file and its complete windows that touch no labelled row."""

    readings: Readings
    windows: Windows
    normal_rows: np.ndarray  # bool per reading: False where the 'label' column is > 0
    excluded: int  # windows left out because they touch a labelled row


def normal_history(
    frame: pd.DataFrame, features: Encoding | Sequence[str], window: int, stride: int, source: str
) -> History:
    """The windows of ``frame`` as the daemon cuts them, less those touching a labelled row.
    ``features``: the bundle's encoding, or numeric feature names."""
    encoding = features if isinstance(features, Encoding) else Encoding.numeric(features)
    readings = encoding.readings(frame, source)
    windows = encoding.store(window, stride).push(readings)
    if "label" not in frame.columns:
        return History(readings, windows, np.ones(len(readings), dtype=bool), 0)
    labels = frame_to_readings(frame, ["label"], source)
    dirty = WindowStore(window, stride, 1).push(labels).data.max(axis=(1, 2)) > 0
    return History(readings, windows.select(~dirty), labels.values[:, 0] == 0, int(dirty.sum()))


@dataclass(frozen=True)
class Split:
    """Masks of the train / validation / calibration windows; each set starts after the
    previous one ends, so none overlaps the next."""

    train: np.ndarray
    val: np.ndarray
    calib: np.ndarray
    calibration_after: float  # calibration windows are those whose first reading is later


def split_by_time(windows: Windows) -> Split:
    """The first 70 % of window end times train, the next 15 % validate, the last 15 % calibrate."""
    cut1, cut2 = np.quantile(windows.end_ts, [TRAIN_SHARE, TRAIN_SHARE + VALIDATION_SHARE])
    return Split(
        train=windows.end_ts <= cut1,
        val=(windows.start_ts > cut1) & (windows.end_ts <= cut2),
        calib=windows.start_ts > cut2,
        calibration_after=float(cut2),
    )


@dataclass(frozen=True)
class Prepared:
    """The normal history cut into windows of one length: features, windows, their time
    split, the training readings, the scaler set on them, and the windows in model units."""

    fields: list[InputField]  # every column of the file, with its kind
    encoding: Encoding  # the inputs the model reads and how they become its features
    hist: History
    split: Split
    train_rows: np.ndarray  # bool per reading: normal and no later than the last training window
    center: np.ndarray
    scale: np.ndarray
    x: np.ndarray  # every window, scaled (float32)

    @property
    def features(self) -> list[str]:
        return self.encoding.features

    @property
    def train_values(self) -> np.ndarray:
        """The training readings in the model's features ``(n, F)``, unscaled: the readings
        themselves, or (an encoding that expands) the newest reading of each training window."""
        if not self.encoding.expands:
            return self.hist.readings.values[self.train_rows]
        return self.hist.windows.data[self.split.train][:, -1, :]


def field_choices(cfg: TrainSettings) -> FieldChoices:
    return FieldChoices(cfg.categorical, cfg.numeric, cfg.ignore, cfg.max_categories)


def encoding_of(frame: pd.DataFrame, fields: list[InputField], cfg: TrainSettings) -> Encoding:
    """The inputs the model reads (every field not ignored) and the per-key context: on with
    ``--context on``, or ``auto`` when some field is categorical and the rows have keys."""
    modelled = [f for f in fields if f.modelled]
    categorical = any(f.kind in ("categorical", "boolean") for f in modelled)
    on = cfg.context == "on" or (cfg.context == "auto" and categorical and "key" in frame.columns)
    return Encoding(tuple(modelled), Context(recent_s=cfg.context_recent_s) if on else None)


def prepare(frame: pd.DataFrame, cfg: TrainSettings, source: str) -> Prepared:
    """Windows of ``cfg.window`` readings, split by time and scaled as the bundle will scale."""
    fields = infer_fields(frame, field_choices(cfg), source)
    encoding = encoding_of(frame, fields, cfg)
    if not encoding.fields:
        columns = "; ".join(f.describe() for f in fields) or "no column besides timestamp, key and label"
        raise DataError(f"{source}: no field to model ({columns})")
    if encoding.categories and cfg.loss == "bce":
        raise DataError(f"{source}: --loss bce models numbers in [0, 1]; categorical fields need mse")
    hist, split = _normal_windows(frame, encoding, cfg, source)
    windows = hist.windows
    train_rows = (hist.readings.ts <= windows.end_ts[split.train].max()) & hist.normal_rows
    train = (
        windows.data[split.train].reshape(-1, len(encoding.features))
        if encoding.expands
        else hist.readings.values[train_rows]
    )
    center, scale = _scaler(train, cfg.loss)
    one_hot = encoding.groups >= 0  # stay 0/1: the model's cross-entropy targets
    center[one_hot], scale[one_hot] = 0.0, 1.0
    x = InputScaler(center, scale)(windows.data)
    return Prepared(fields, encoding, hist, split, train_rows, center, scale, x)


def _normal_windows(
    frame: pd.DataFrame, encoding: Encoding, cfg: TrainSettings, source: str
) -> tuple[History, Split]:
    """Normal windows and their time split; a DataError when there is too little."""
    hist = normal_history(frame, encoding, cfg.window, cfg.stride, source)
    if hist.excluded:
        log.info("%s: %d windows touch labelled rows and are left out", source, hist.excluded)
    n = len(hist.windows)
    if n < MIN_WINDOWS:
        raise DataError(f"{source}: only {n} windows of {cfg.window} readings; need {MIN_WINDOWS}")
    split = split_by_time(hist.windows)
    if min(split.train.sum(), split.val.sum(), split.calib.sum()) < 5:
        raise DataError(f"{source}: too little history to split into train/validation/calibration")
    return hist, split


def _scaler(values: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(center, scale)``: standardisation, or min-max to [0, 1] for BCE."""
    if loss == "bce":
        lo, hi = values.min(axis=0).astype(np.float64), values.max(axis=0).astype(np.float64)
        return lo, np.where(hi - lo > 1e-8, hi - lo, 1.0)
    std = values.std(axis=0, dtype=np.float64)
    return values.mean(axis=0, dtype=np.float64), np.where(std > 1e-8, std, 1.0)
