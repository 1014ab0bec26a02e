"""Offline scoring: the one readings → windows → scores pipeline."""

import numpy as np

from streamae.core.bundle import Bundle, load_bundle
from streamae.core.offline import SCORE_COLUMNS, frame_windows, score_frame, score_windows
from streamae.core.scoring import CLIP_SIGMAS, InputScaler, Scorer


def test_one_row_per_window_stamped_with_the_last_reading(bundle_dir, history, scorer_of):
    scorer = scorer_of(bundle_dir)
    frame = history.head(300)
    out = score_frame(frame, scorer, "h.csv")
    assert list(out.columns) == SCORE_COLUMNS
    per_key = frame.groupby("key").size()
    assert len(out) == sum(n - 20 + 1 for n in per_key)
    joined = out.merge(frame, on=["key", "timestamp"], how="left", validate="one_to_one")
    assert len(joined) == len(out) and joined["flow"].notna().all()
    row = out.iloc[0]
    assert frame.iloc[row["source_offset_end"]]["timestamp"] == row["timestamp"]
    assert frame.iloc[row["source_offset_start"]]["timestamp"] == row["window_start"]
    assert out["source_offset_end"].is_monotonic_increasing


def test_score_frame_is_frame_windows_then_score_windows(bundle_dir, history):
    """The one pipeline: the rows of `streamae score` are the windows of frame_windows,
    scored and smoothed by score_windows (here with EWMA on, so smoothing is visible)."""
    bundle = load_bundle(bundle_dir)
    smoothed = bundle.manifest.model_copy(
        update={"threshold": bundle.manifest.threshold.model_copy(update={"ewma_alpha": 0.3})}
    )
    scorer = Scorer(Bundle(bundle.path, smoothed, bundle.model_bytes), ["CPUExecutionProvider"])
    frame = history.head(400)
    windows = frame_windows(frame, smoothed.features, smoothed.window, smoothed.stride, "h")
    batch, scores = score_windows(scorer, windows)
    out = score_frame(frame, scorer, "h")  # file order: the stream order windows come in
    np.testing.assert_array_equal(out["source_offset_end"], windows.last_offset)
    np.testing.assert_array_equal(out["raw_score"], batch.scores)
    np.testing.assert_array_equal(out["score"], scores)
    assert (out["score"] != out["raw_score"]).mean() > 0.9
    np.testing.assert_array_equal(out["is_anomaly"], scores > smoothed.threshold.value)
    np.testing.assert_array_equal(batch.scores, scorer.decision_function(windows.data))


def test_input_scaler_is_the_scorers_scaling(bundle_dir, history, scorer_of):
    """Training feeds the model through InputScaler; the Scorer serves through the same."""
    scorer = scorer_of(bundle_dir)
    m = scorer.manifest
    windows = frame_windows(history.head(100), m.features, m.window, m.stride, "h")
    x = InputScaler(m.scaler.mean, m.scaler.scale)(windows.data)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, scorer.scale(windows.data))
    huge = np.full((1, m.window, len(m.features)), 3e38, np.float32)
    assert InputScaler(m.scaler.mean, m.scaler.scale)(huge).max() == CLIP_SIGMAS
