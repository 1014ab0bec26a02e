"""Offline scoring of a readings file (backfills, evaluation) through the daemon's core.

One output row per scored window, with the columns of the score message; ``timestamp``
and ``key`` are those of the window's last reading, so scores join back to readings.
"""

from __future__ import annotations

import json

import pandas as pd

from streamae.core.readings import frame_to_readings
from streamae.core.scoring import Scorer
from streamae.core.windows import WindowStore

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


def score_frame(frame: pd.DataFrame, scorer: Scorer, source: str, top_k: int = 3) -> pd.DataFrame:
    """Score every window of ``frame`` (file order within each key); rows in file order."""
    m = scorer.manifest
    readings = frame_to_readings(frame, m.features, source)
    windows = WindowStore(m.window, m.stride, len(m.features)).push(readings)
    messages = scorer.messages(windows, scorer.score(windows.data), top_k, smoothing={})
    rows = [
        {
            "timestamp": msg["window_end"],
            **{k: v for k, v in msg.items() if k not in ("source", "top_features")},
            "top_features": json.dumps(msg["top_features"]),
            **{f"source_{k}": v for k, v in msg["source"].items()},
        }
        for msg in messages
    ]
    out = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    return out.sort_values("source_offset_end", kind="stable").reset_index(drop=True)
