"""The detector contract: Scorer is a Detector, and higher scores mean worse windows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from streamae.core.bundle import load_bundle
from streamae.core.detector import Detector
from streamae.core.scoring import Scorer


def _flagged(detector: Detector, windows: np.ndarray) -> np.ndarray:
    """Typed against the protocol: mypy checks that a Scorer may be passed here."""
    return detector.decision_function(windows) > detector.threshold


def _normal_windows(history: pd.DataFrame, features: list[str], window: int) -> np.ndarray:
    one_key = history[history["key"] == history["key"].iloc[0]][features].to_numpy(np.float32)
    return np.stack([one_key[i : i + window] for i in range(0, 600, 15)])


def test_scorer_satisfies_the_detector_protocol(bundle_dir):
    scorer = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"])
    assert isinstance(scorer, Detector)
    assert scorer.threshold == scorer.manifest.threshold.value
    assert not isinstance(object(), Detector)


def test_higher_scores_for_injected_outliers(bundle_dir, history):
    scorer = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"])
    m = scorer.manifest
    normal = _normal_windows(history, m.features, m.window)
    spread = normal.reshape(-1, len(m.features)).std(axis=0)
    rng = np.random.default_rng(0)
    for kind in ("spike", "shift", "noise"):
        outliers = normal.copy()
        f = rng.integers(len(m.features), size=len(normal))
        rows = np.arange(len(normal))
        if kind == "spike":
            outliers[rows, m.window // 2, f] += 8 * spread[f]
        elif kind == "shift":
            outliers[rows, m.window // 2 :, f] += 4 * spread[f, None]
        else:
            outliers[rows, :, f] += 3 * spread[f, None] * rng.standard_normal((len(normal), m.window))
        scores, worse = scorer.decision_function(normal), scorer.decision_function(outliers)
        assert scores.shape == (len(normal),) and scores.dtype == np.float64
        assert (worse > scores).all(), kind  # each window scores higher once corrupted
        assert _flagged(scorer, outliers).mean() > 0.9 > _flagged(scorer, normal).mean(), kind
