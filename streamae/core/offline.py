"""Readings file → windows → scores: the one offline pipeline through the daemon's core.

``streamae score``, ``evaluate``, ``inspect``, training's calibration and ``streamae
calibrate`` all cut windows with :func:`frame_windows`. Whatever compares a score with the
threshold (``score``, ``evaluate``, ``inspect``, selection, ``serve``) scores them with
``Scorer.stream``; calibration alone uses :func:`score_windows`, the smoothed scores before
post-processing, because post-processing works on ``score / threshold`` and so needs the
threshold it is about to set. :func:`score_frame` gives one output row per scored window,
with the columns of the score message; ``timestamp`` and ``key`` are those of the window's
last reading, so scores join back to readings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from streamae.core.encoding import Encoding
from streamae.core.scoring import ScoreBatch, Scorer
from streamae.core.windows import Windows

SCORE_COLUMNS = [
    "timestamp",
    "key",
    "window_start",
    "window_end",
    "score",
    "raw_score",
    "threshold",
    "is_anomaly",
    "top_features",
    "model_version",
    "source_topic",
    "source_partition",
    "source_offset_start",
    "source_offset_end",
]


def frame_windows(
    frame: pd.DataFrame,
    features: Encoding | Sequence[str],
    window: int,
    stride: int,
    source: str,
    idle_ttl_s: float = 0.0,
) -> Windows:
    """Every window of a readings frame, as the daemon cuts them from a stream in file order
    (in the order of their last reading); offsets are row numbers of ``frame``. With
    ``idle_ttl_s`` (the daemon's ``STREAMAE_WINDOWS__IDLE_TTL_S``) no window spans a longer
    silence of a key, as in the daemon. ``features``: the bundle's encoding (its inputs and how
    they become features), or numeric feature names."""
    encoding = features if isinstance(features, Encoding) else Encoding.numeric(features)
    return encoding.store(window, stride, idle_ttl_s).push(encoding.readings(frame, source))


def score_windows(scorer: Scorer, windows: Windows) -> tuple[ScoreBatch, np.ndarray]:
    """Raw scores of ``windows`` and the scores a threshold is calibrated on: smoothed per
    key when the bundle asks for it (each key starting afresh at its first window), before
    post-processing and streaming normalisation, which depend on the threshold."""
    batch = scorer.score(windows.data)
    return batch, scorer.smooth(windows.keys, batch.scores, {})


def score_frame(
    frame: pd.DataFrame, scorer: Scorer, source: str, top_k: int = 3, idle_ttl_s: float = 0.0
) -> pd.DataFrame:
    """Score every window of ``frame`` (file order within each key) as the daemon would,
    post-processing included (each key starting afresh); rows in file order."""
    m = scorer.manifest
    windows = frame_windows(frame, scorer.encoding, m.window, m.stride, source, idle_ttl_s)
    batch, smoothed = scorer.stream(windows)
    rows = [
        {
            "timestamp": msg["window_end"],
            **{k: v for k, v in msg.items() if k not in ("source", "top_features")},
            "top_features": json.dumps(msg["top_features"]),
            **{f"source_{k}": v for k, v in msg["source"].items()},
        }
        for msg in scorer.to_messages(windows, batch, smoothed, top_k)
    ]
    out = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    return out.sort_values("source_offset_end", kind="stable").reset_index(drop=True)
