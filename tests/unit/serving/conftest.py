"""Fixtures for serving tests without a broker: a tiny bundle, its scorer, readings, a daemon."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
import pytest
from daemon_harness import WINDOW

from streamae.core.config import TrainSettings
from streamae.core.scoring import Scorer


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, history: pd.DataFrame) -> Path:
    from streamae.training.fit import fit

    out = tmp_path_factory.mktemp("serving") / "tiny"
    fit(history, out, TrainSettings(window=WINDOW, epochs=1, seed=0), progress=False)
    return out


@pytest.fixture(scope="session")
def scorer(tiny_bundle: Path, scorer_of) -> Scorer:
    return scorer_of(tiny_bundle)


@pytest.fixture
def reading(history: pd.DataFrame) -> Callable[[int, str], bytes]:
    """``reading(i, key)``: the i-th normal reading of the history, as a message value."""
    features = [c for c in history.columns if c not in ("timestamp", "key")]
    rows = history[features].to_numpy().tolist()

    def make(i: int, key: str = "m1") -> bytes:
        values = dict(zip(features, rows[i]))
        return orjson.dumps({"key": key, "ts": 1_767_225_600 + 60 * i, "values": values})

    return make
