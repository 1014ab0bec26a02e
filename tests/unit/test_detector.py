"""The detector contract: the flag is the score over the threshold, and higher scores mean
worse windows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from streamae.core.detector import Detector


def _flagged(detector: Detector, windows: np.ndarray) -> np.ndarray:
    """Typed against the protocol: mypy checks that a Scorer may be passed here."""
    return detector.decision_function(windows) > detector.threshold


def _normal_windows(history: pd.DataFrame, features: list[str], window: int) -> np.ndarray:
    one_key = history[history["key"] == history["key"].iloc[0]][features].to_numpy(np.float32)
    return np.stack([one_key[i : i + window] for i in range(0, 600, 15)])


def test_without_smoothing_a_window_is_flagged_when_its_score_is_over_the_threshold(
    bundle_dir, make_stream, scorer_of
):
    """The protocol's promise, held to what ``score`` and ``serve`` publish: for a bundle that
    neither smooths nor post-processes, the flag is ``decision_function(windows) > threshold``."""
    from streamae.core.offline import frame_windows, score_frame

    scorer = scorer_of(bundle_dir)
    m = scorer.manifest
    assert m.threshold.ewma_alpha == 1.0 and not m.postprocess.record_high  # nothing between them
    frame = make_stream(12, 2, seed=9).frame
    published = score_frame(frame, scorer, "s")
    windows = frame_windows(frame, m.features, m.window, m.stride, "s")
    by_end = dict(zip(windows.last_offset.tolist(), _flagged(scorer, windows.data).tolist()))
    assert published["is_anomaly"].any() and not published["is_anomaly"].all()
    assert published["is_anomaly"].tolist() == [by_end[o] for o in published["source_offset_end"]]


def test_higher_scores_for_injected_outliers(bundle_dir, history, scorer_of):
    scorer = scorer_of(bundle_dir)
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
