"""Normal history → windows for fitting and calibration.

"Normal-only" history may still carry labelled incidents: windows touching a labelled row
are left out of training and calibration rather than trusting the caller to have removed
them. Windows are split by time, so the optimiser never sees the windows that decide
early stopping or set the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.core.readings import Readings, frame_to_readings
from streamae.core.windows import Windows, WindowStore

TRAIN_SHARE, VALIDATION_SHARE = 0.70, 0.15  # the calibration windows are the rest


@dataclass(frozen=True)
class History:
    """The readings of a history file and its complete windows that touch no labelled row."""

    readings: Readings
    windows: Windows
    normal_rows: np.ndarray  # bool per reading: False where the 'label' column is > 0
    excluded: int  # windows left out because they touch a labelled row


def normal_history(
    frame: pd.DataFrame, features: Sequence[str], window: int, stride: int, source: str
) -> History:
    """The windows of ``frame`` as the daemon cuts them, less those touching a labelled row."""
    readings = frame_to_readings(frame, list(features), source)
    windows = WindowStore(window, stride, len(features)).push(readings)
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
