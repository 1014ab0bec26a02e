from streamae.core.bundle import load_bundle
from streamae.core.offline import SCORE_COLUMNS, score_frame
from streamae.core.scoring import Scorer


def test_one_row_per_window_stamped_with_the_last_reading(bundle_dir, history):
    scorer = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"])
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
