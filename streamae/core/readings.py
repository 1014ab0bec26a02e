"""Columnar batches of readings, and loading them from CSV or Parquet files.

A batch comes from one source partition (a Kafka partition, or a file), so window
provenance is a plain offset range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamae.core.categories import codes

#: Columns of a history/stream file that are never features.
RESERVED_COLUMNS = ("timestamp", "key", "label", "anomaly_type", "anomaly_id")
DEFAULT_KEY = "default"


def parse_timestamp(ts: Any) -> float:
    """Epoch seconds from a number or an ISO 8601 string (UTC when no offset is given)."""
    if isinstance(ts, bool):
        raise ValueError("timestamp must be a number or an ISO 8601 string, not a boolean")
    if isinstance(ts, (int, float)):
        value = float(ts)
    elif isinstance(ts, str):
        parsed = datetime.fromisoformat(ts[:-1] + "+00:00" if ts.endswith("Z") else ts)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        value = parsed.timestamp()
    else:
        raise ValueError(f"timestamp must be a number or an ISO 8601 string, got {ts!r}")
    if not math.isfinite(value):
        raise ValueError("timestamp is not finite")
    return value


@dataclass(frozen=True)
class Readings:
    """``n`` readings: entity keys, event times (epoch s), values ``(n, F)`` and offsets."""

    keys: np.ndarray  # object array of str
    ts: np.ndarray  # float64
    values: np.ndarray  # float32, (n, F)
    offsets: np.ndarray  # int64: Kafka offset, or row number for a file
    topic: str
    partition: int
    # int32: position of the reading in its record's list, -1 for a record of one reading;
    # None: no record held a list. A dead letter names the reading by offset and index.
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def indices(self) -> np.ndarray:
        """:attr:`index`, with -1 filled in when it is None."""
        return np.full(len(self.ts), -1, np.int32) if self.index is None else self.index

    @classmethod
    def empty(cls, n_features: int, topic: str = "", partition: int = 0) -> Readings:
        return cls(
            keys=np.empty(0, dtype=object),
            ts=np.empty(0, dtype=np.float64),
            values=np.empty((0, n_features), dtype=np.float32),
            offsets=np.empty(0, dtype=np.int64),
            topic=topic,
            partition=partition,
        )


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and column."""


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file and normalise its ``timestamp`` column to epoch seconds."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    frame = _read_parquet(path) if _is_parquet(path) else pd.read_csv(path)
    if "timestamp" not in frame.columns:
        raise DataError(f"{path}: no 'timestamp' column (columns: {list(frame.columns)})")
    frame["timestamp"] = to_epoch_seconds(frame["timestamp"], path)
    if "key" in frame.columns:
        frame["key"] = frame["key"].astype(str)
    return frame


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as Parquet (``.parquet``/``.pq``) or CSV, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_parquet(path):
        _need_parquet(path)
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _need_parquet(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DataError(
            f"{path}: Parquet needs pyarrow: pip install 'streamae[train]' (or use a .csv file)"
        ) from None


def _numbers(frame: pd.DataFrame, columns: list[str], source: str) -> np.ndarray:
    """The numeric ``columns`` as float32, refusing a missing or non-finite value."""
    try:
        values: np.ndarray = frame[columns].to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: a numeric column holds something else ({exc})") from None
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{source}: {int(bad.sum())} missing or non-finite value(s), first in row {row}, "
            f"column '{columns[col]}'"
        )
    return values


def _read_parquet(path: Path) -> pd.DataFrame:
    _need_parquet(path)
    return pd.read_parquet(path)


def to_epoch_seconds(column: pd.Series, path: Path | str = "") -> np.ndarray:
    """Epoch seconds from numbers (already epoch seconds) or ISO 8601 strings (UTC if naive)."""
    if pd.api.types.is_numeric_dtype(column):
        seconds: np.ndarray = column.to_numpy(dtype=np.float64)
        return seconds
    try:
        parsed = pd.to_datetime(column, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: column 'timestamp' is neither epoch seconds nor ISO 8601: {exc}") from None
    seconds = parsed.astype("int64").to_numpy() / _unit_per_second(parsed)
    return seconds


def _unit_per_second(parsed: pd.Series) -> float:
    unit = np.datetime_data(parsed.dt.tz_localize(None).to_numpy().dtype)[0]
    return {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]


def frame_to_readings(
    frame: pd.DataFrame,
    features: list[str],
    source: str,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> Readings:
    """Readings in file order; offsets are row numbers so scores join back to rows. Columns
    named in ``categories`` are coded in their vocabulary (``core/categories.py``)."""
    categories = categories or {}
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing feature column(s) {missing}")
    values = np.empty((len(frame), len(features)), np.float32)
    for j, f in enumerate(features):
        if f in categories:
            values[:, j] = codes(frame[f], categories[f])[0]
    numeric = [j for j, f in enumerate(features) if f not in categories]
    values[:, numeric] = _numbers(frame, [features[j] for j in numeric], source)
    keys = (
        frame["key"].to_numpy(dtype=object)
        if "key" in frame.columns
        else np.full(len(frame), DEFAULT_KEY, dtype=object)
    )
    return Readings(
        keys=keys,
        ts=frame["timestamp"].to_numpy(dtype=np.float64),
        values=values,
        offsets=np.arange(len(frame), dtype=np.int64),
        topic=source,
        partition=0,
    )
