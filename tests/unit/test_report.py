"""streamae evaluate: the report, its metrics, table and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pictures import assert_picture

from streamae.cli import main
from streamae.core.config import AlertSettings, load_settings
from streamae.core.offline import score_frame
from streamae.core.scoring import Scorer
from streamae.evaluation.metrics import evaluate
from streamae.evaluation.report import evaluate_frame, format_table

WINDOW = 20  # bundle_dir's window


@pytest.fixture(scope="module")
def stream(make_stream) -> pd.DataFrame:
    """Twelve hours of both machines with two injected anomalies each."""
    return make_stream(hours=12, anomalies=2, seed=5).frame


@pytest.fixture(scope="module")
def stream_csv(stream: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "stream.csv"
    stream.to_csv(path, index=False)
    return path


def _windows_per_key(frame: pd.DataFrame, window: int) -> int:
    sizes = frame.groupby("key").size()
    return int(np.maximum(sizes - window + 1, 0).sum())


def test_evaluate_writes_report_plots_and_table(bundle_dir, stream, stream_csv, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(bundle_dir), str(stream_csv), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())

    assert report["bundle"] == str(bundle_dir) and report["data"] == str(stream_csv)
    assert report["variant"] == "dense" and report["model_version"]
    assert set(report["threshold"]) >= {"value", "method", "params", "ewma_alpha"}
    assert report["rows_scored"] == _windows_per_key(stream, WINDOW)
    assert report["alerts_opened"] > 0 and len(report["alerts"]) == report["alerts_opened"]

    pooled = report["pooled"]
    assert pooled["windows"] == report["rows_scored"]
    assert pooled["point"]["f1"] > 0
    assert pooled["point_adjusted"]["f1"] >= pooled["point"]["f1"]
    assert pooled["ranking"]["roc_auc"] > 0.5
    assert pooled["event"]["labelled_events"] == 4  # two per machine, never merged across keys
    assert set(report["per_series"]) == {"machine-01", "machine-02"}
    assert sum(s["windows"] for s in report["per_series"].values()) == pooled["windows"]
    # the pooled metrics are those of the scores `streamae score` gives, under the names
    # evaluation.metrics gives them: one name per metric
    scores = score_frame(stream, Scorer.load(bundle_dir, load_settings()), "s")
    labels = stream["label"].to_numpy()[scores["source_offset_end"]] > 0
    ordered = scores.assign(label=labels).sort_values("key", kind="stable")
    expected = evaluate(
        ordered["label"].to_numpy(),
        ordered["is_anomaly"].to_numpy(),
        ordered["raw_score"].to_numpy(),
        ordered["window_end"].to_numpy(),
        ordered["key"].to_numpy(),
    )
    assert pooled == json.loads(json.dumps(expected))
    for key in report["per_series"]:
        png = out / f"{key}.png"
        assert_picture(png, (12, 2.2 * 1 + 0.8))  # one panel: this key's scores
        assert report["plots"][key] == str(png)

    assert "pooled" in printed and "machine-01" in printed and "F1 PA" in printed
    assert f"{report['alerts_opened']} alerts opened" in printed


def test_windows_take_the_label_of_their_last_reading(bundle_dir, stream, scorer_of):
    frame = stream.copy()
    # one labelled reading per key, early enough that several windows contain it
    frame["label"] = 0
    marked = frame.groupby("key").nth(100).index
    frame.loc[marked, "label"] = 3  # any label > 0 is anomalous
    rep = evaluate_frame(frame, scorer_of(bundle_dir), AlertSettings(), "s.csv")
    hot = rep.scores[rep.scores["label"] == 1]
    # exactly the window ending on the marked reading, not the 19 later ones containing it
    assert sorted(zip(hot["key"], hot["window_end"])) == sorted(
        zip(frame.loc[marked, "key"], frame.loc[marked, "timestamp"])
    )
    assert rep.pooled["event"]["labelled_events"] == 2
    assert rep.rows_scored == _windows_per_key(frame, WINDOW)


def test_unlabelled_span_gives_no_ranking_metrics(bundle_dir, stream, scorer_of):
    frame = stream.assign(label=0)
    rep = evaluate_frame(frame, scorer_of(bundle_dir), AlertSettings(), "s.csv")
    assert rep.pooled["ranking"] == {"roc_auc": None, "pr_auc_average_precision": None}
    assert rep.pooled["event"]["event_recall"] is None
    table = format_table(rep)
    assert table.splitlines()[-1].startswith("pooled") and " - " in table


def test_evaluate_without_label_column_names_it(bundle_dir, history, tmp_path, capsys):
    data = tmp_path / "h.csv"
    history.head(200).to_csv(data, index=False)
    assert main(["evaluate", str(bundle_dir), str(data), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'label'" in err and "h.csv" in err
    assert not (tmp_path / "out").exists()


def test_non_numeric_labels_are_a_data_error(bundle_dir, stream, tmp_path, capsys):
    data = tmp_path / "s.csv"
    stream.head(300).assign(label=["yes"] + [0] * 299).to_csv(data, index=False)
    assert main(["evaluate", str(bundle_dir), str(data), "-o", str(tmp_path / "out")]) == 2
    assert "column 'label' must be numbers" in capsys.readouterr().err
