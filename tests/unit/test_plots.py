import pandas as pd
from pictures import assert_picture

from streamae.evaluation.plots import label_spans, plot_scores


def test_label_spans_are_runs_per_key():
    frame = pd.DataFrame(
        {
            "timestamp": [0, 1, 2, 3, 4, 0, 1, 2],
            "key": ["a"] * 5 + ["b"] * 3,
            "label": [0, 1, 1, 0, 1, 1, 1, 0],
        }
    )
    spans = label_spans(frame)
    assert spans.values.tolist() == [["a", 1, 2], ["a", 4, 4], ["b", 0, 1]]


def test_plot_writes_a_png(tmp_path):
    scores = pd.DataFrame(
        {
            "key": ["a"] * 50,
            "window_end": range(0, 3000, 60),
            "score": [0.01] * 45 + [0.5] * 5,
            "threshold": [0.1] * 50,
        }
    )
    path = plot_scores(
        scores,
        tmp_path / "p.png",
        pd.DataFrame({"key": ["a"], "start": [2700], "end": [2940]}),
        [("a", 2760.0, 2940.0)],
    )
    assert path == tmp_path / "p.png"
    assert_picture(path, (12, 2.2 * 1 + 0.8))  # one panel per key
