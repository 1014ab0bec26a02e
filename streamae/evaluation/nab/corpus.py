"""A NAB corpus: its data files' timestamps and label windows (``data/``, ``labels/``).

:class:`Series` is one data file and its windows, located by row as NAB's sweeper locates
them; :func:`load_corpus` reads NAB's layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

WINDOWS_FILE = "labels/combined_windows.json"  # run.py's default --windowsFile


@dataclass(frozen=True, eq=False)
class Series:
    """One NAB data file: row timestamps and its label windows (inclusive ``(start, end)``).

    ``timestamps`` may be ``datetime64`` (as :func:`load_corpus` gives) or numbers; window limits
    must equal a row's timestamp exactly, as NAB's labeler guarantees and its sweeper assumes.
    """

    name: str
    timestamps: np.ndarray
    windows: tuple[tuple[Any, Any], ...] = ()

    @property
    def n_rows(self) -> int:
        return len(self.timestamps)

    def window_rows(self) -> np.ndarray:
        """``(k, 2)`` int64 first and last row of each window.

        Rows are found by timestamp equality, first occurrence, as ``Sweeper.calcSweepScore``
        does (``timestamps.index``): some NAB files repeat timestamps, so searching a sorted
        array would be wrong.
        """
        rows = np.empty((len(self.windows), 2), dtype=np.int64)
        for k, (start, end) in enumerate(self.windows):
            for j, limit in enumerate((start, end)):
                hit = np.flatnonzero(self.timestamps == limit)
                if not len(hit):
                    raise ValueError(f"{self.name}: window limit {limit!r} is not a row timestamp")
                rows[k, j] = hit[0]
        if len(rows) and (np.any(rows[:, 1] < rows[:, 0]) or np.any(rows[1:, 0] <= rows[:-1, 1])):
            # The sweeper walks windows in order and cannot nest or reorder them.
            raise ValueError(f"{self.name}: windows must be ordered and disjoint")
        return rows


def load_corpus(root: Path, windows_file: str = WINDOWS_FILE) -> list[Series]:
    """Read NAB's ``data/<category>/<file>.csv`` and label windows under ``root``.

    Every file named in the windows JSON is loaded (as ``Runner.detect`` does), sorted by name;
    timestamps are ``datetime64[ns]``.
    """
    root = Path(root)
    labels: dict[str, list[list[str]]] = json.loads((root / windows_file).read_text())
    corpus = []
    for name in sorted(labels):
        frame = pd.read_csv(root / "data" / name, usecols=["timestamp"])
        ts = pd.to_datetime(frame["timestamp"], format="%Y-%m-%d %H:%M:%S").to_numpy("datetime64[ns]")
        windows = tuple(
            (np.datetime64(pd.Timestamp(start), "ns"), np.datetime64(pd.Timestamp(end), "ns"))
            for start, end in labels[name]
        )
        corpus.append(Series(name=name, timestamps=ts, windows=windows))
    return corpus
