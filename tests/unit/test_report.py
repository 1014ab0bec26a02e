"""streamae evaluate / inspect: the report, its metrics and plots, and bundle inspection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamae.cli import main
from streamae.core.bundle import load_bundle
from streamae.core.config import AlertSettings, TrainSettings
from streamae.core.scoring import Scorer
from streamae.evaluation.report import evaluate_frame, format_table, latent_points

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


@pytest.fixture(scope="module")
def code2_bundle(history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dense bundle whose code is two-dimensional."""
    from streamae.training.fit import fit

    out = tmp_path_factory.mktemp("code2") / "dense2"
    fit(history, out, TrainSettings(window=10, epochs=2, code=2), progress=False)
    return out


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
    for key in report["per_series"]:
        png = out / f"{key}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
        assert report["plots"][key] == str(png)

    assert "pooled" in printed and "machine-01" in printed and "F1 PA" in printed
    assert f"{report['alerts_opened']} alerts opened" in printed


def test_windows_take_the_label_of_their_last_reading(bundle_dir, stream):
    frame = stream.copy()
    # one labelled reading per key, early enough that several windows contain it
    frame["label"] = 0
    marked = frame.groupby("key").nth(100).index
    frame.loc[marked, "label"] = 3  # any label > 0 is anomalous
    rep = evaluate_frame(frame, Scorer(load_bundle(bundle_dir)), AlertSettings(), "s.csv")
    hot = rep.scores[rep.scores["label"] == 1]
    # exactly the window ending on the marked reading, not the 19 later ones containing it
    assert sorted(zip(hot["key"], hot["window_end"])) == sorted(
        zip(frame.loc[marked, "key"], frame.loc[marked, "timestamp"])
    )
    assert rep.pooled["event"]["labelled_events"] == 2
    assert rep.rows_scored == _windows_per_key(frame, WINDOW)


def test_unlabelled_span_gives_no_ranking_metrics(bundle_dir, stream):
    frame = stream.assign(label=0)
    rep = evaluate_frame(frame, Scorer(load_bundle(bundle_dir)), AlertSettings(), "s.csv")
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


def test_inspect_without_data_prints_manifest_and_training_curve(bundle_dir, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)  # the default output lands inside the bundle
    assert main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    m = load_bundle(bundle).manifest
    assert f"variant      {m.variant}" in out and f"by {m.threshold.method}" in out
    assert "need data" in out
    assert (bundle / "inspect" / "training_curve.png").stat().st_size > 10_000
    assert sorted(p.name for p in (bundle / "inspect").iterdir()) == ["training_curve.png"]


def test_inspect_with_labelled_data_writes_histogram_and_latent(bundle_dir, stream_csv, tmp_path, capsys):
    out = tmp_path / "insp"
    assert main(["inspect", str(bundle_dir), str(stream_csv), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dense" in printed and "quantile" in printed and "labelled anomalous" in printed
    for name in ("training_curve.png", "score_histogram.png", "latent.png"):
        assert (out / name).stat().st_size > 10_000, name


def test_inspect_with_unlabelled_data(code2_bundle, history, tmp_path, capsys):
    data = tmp_path / "h.csv"
    history.head(600).to_csv(data, index=False)
    assert main(["inspect", str(code2_bundle), str(data), "-o", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "code size 2" in printed and "labelled anomalous" not in printed
    assert (tmp_path / "o" / "latent.png").stat().st_size > 10_000


def test_latent_points_pca_for_wide_codes(bundle_dir, stream):
    scorer = Scorer(load_bundle(bundle_dir))
    assert scorer.manifest.code_size == 8
    from streamae.evaluation.report import _score_windows

    windows, scores = _score_windows(stream, scorer, "s")
    points, xlabel, ylabel = latent_points(scorer.encode(windows.data), scores)
    assert points.shape == (len(windows), 2)
    assert "PCA 1" in xlabel and "8-d" in xlabel and "PCA 2" in ylabel
    assert points[:, 0].var() >= points[:, 1].var()  # first component carries the most variance


def test_latent_points_direct_for_two_dimensional_codes(code2_bundle, stream):
    scorer = Scorer(load_bundle(code2_bundle))
    codes = scorer.encode(np.stack([stream[scorer.manifest.features].to_numpy(np.float32)[:10]] * 3))
    points, xlabel, ylabel = latent_points(codes, np.ones(3))
    assert codes.shape == (3, 2)
    np.testing.assert_array_equal(points, codes)
    assert (xlabel, ylabel) == ("code[0]", "code[1]")


def test_latent_points_one_dimensional_code_uses_the_score():
    points, xlabel, ylabel = latent_points(np.array([[0.5], [1.0]]), np.array([0.1, 10.0]))
    assert xlabel == "code[0]"
    np.testing.assert_allclose(points, [[0.5, -1.0], [1.0, 1.0]])
    assert ylabel == "log10 window score"


def test_non_numeric_labels_are_a_data_error(bundle_dir, stream, tmp_path, capsys):
    data = tmp_path / "s.csv"
    stream.head(300).assign(label=["yes"] + [0] * 299).to_csv(data, index=False)
    assert main(["evaluate", str(bundle_dir), str(data), "-o", str(tmp_path / "out")]) == 2
    assert "column 'label' must be numbers" in capsys.readouterr().err
