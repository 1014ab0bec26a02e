"""Calibration through the serving Scorer, and `streamae calibrate` (recalibration without
retraining): thresholds are computed from exactly the scores `streamae score` gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamae.cli import main
from streamae.core.bundle import load_bundle
from streamae.core.config import TrainSettings, load_settings
from streamae.core.offline import score_frame
from streamae.core.scoring import Scorer
from streamae.training.calibration import SCORE_FLOOR, ThresholdRule
from streamae.training.fit import TRAINING_PLOT, fit


def _calibration_rows(history: pd.DataFrame, bundle: Path) -> pd.DataFrame:
    """The history rows whose windows are exactly the bundle's calibration windows."""
    after = load_bundle(bundle).manifest.training["calibration_after_ts"]
    return history[history["timestamp"] > after]


def _score_cli(bundle: Path, rows: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    """`streamae score BUNDLE rows`: Parquet both ways, so no float is re-parsed from text."""
    data, out = tmp_path / "rows.parquet", tmp_path / "scores.parquet"
    rows.to_parquet(data, index=False)
    assert main(["score", str(bundle), str(data), "-o", str(out)]) == 0
    return pd.read_parquet(out)


@pytest.fixture
def copy(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


@pytest.mark.parametrize(
    "settings",
    [
        {"threshold": "pot", "target_far": 0.01},
        {"threshold": "quantile", "ewma_alpha": 0.4},
        {"threshold": "quantile", "time_weighting": "recent", "feature_norm": True, "feature_pool": "max"},
    ],
    ids=["pot", "quantile-ewma", "recent-normalised-max"],
)
def test_calibration_scores_are_what_streamae_score_gives(history, tmp_path, settings):
    result = fit(
        history, tmp_path / "b", TrainSettings(window=10, epochs=2, seed=2, **settings), progress=False
    )
    t = result.bundle.manifest.threshold
    scored = _score_cli(result.bundle.path, _calibration_rows(history, result.bundle.path), tmp_path)
    assert len(scored) == t.calibration_windows == len(result.calibration_scores)
    # the same windows, in the same order, with bit-identical scores (smoothed, when asked)
    np.testing.assert_array_equal(scored["score"].to_numpy(), result.calibration_scores)
    if t.ewma_alpha < 1:
        assert (scored["score"] != scored["raw_score"]).mean() > 0.9
    # so the threshold is exactly the rule applied to the scores the bundle serves
    rule = ThresholdRule(settings["threshold"], target_far=settings.get("target_far", 1e-3))
    assert t.value == rule.apply(np.maximum(scored["score"].to_numpy(), SCORE_FLOOR))["value"]


def test_calibrate_reproduces_the_trained_threshold_on_the_same_windows(copy, history, tmp_path, capsys):
    before = load_bundle(copy)
    data = tmp_path / "normal.parquet"
    _calibration_rows(history, copy).to_parquet(data, index=False)
    assert main(["calibrate", str(copy), str(data)]) == 0  # keeps the method: pot, target_far 1e-4
    after = load_bundle(copy).manifest
    assert after.threshold == before.manifest.threshold
    assert f"→ {after.threshold.value:.6g} (pot target_far=0.0001" in capsys.readouterr().out
    # only the threshold's record changed: same model, and the recalibration is on record
    assert after.checksum == before.manifest.checksum
    assert after.model_version == f"{before.manifest.model_version}+recal{after.model_version[-15:]}"
    recal = after.training["recalibration"]
    assert recal["source"] == str(data) and recal["previous"] == before.manifest.threshold.model_dump()
    assert (copy / TRAINING_PLOT).is_file()
    assert not list(copy.parent.glob(f".{copy.name}*"))  # no temporary folder left behind


def test_recalibrating_with_another_quantile_moves_the_threshold(copy, history, tmp_path, capsys):
    data = tmp_path / "normal.csv"
    history.to_csv(data, index=False)
    values = {}
    for q in ("0.9", "0.99"):
        out = tmp_path / f"q{q}"
        assert (
            main(
                [
                    "calibrate",
                    str(copy),
                    str(data),
                    "--threshold",
                    "quantile",
                    "--quantile",
                    q,
                    "-o",
                    str(out),
                ]
            )
            == 0
        )
        t = load_bundle(out).manifest.threshold
        assert (t.method, t.params, t.ewma_alpha) == ("quantile", {"quantile": float(q)}, 1.0)
        # the recalibrated bundle loads and scores: the share flagged on its own normal data
        # is what the quantile says
        scores = score_frame(pd.read_csv(data), Scorer.load(out, load_settings()), "h")
        assert len(scores) == t.calibration_windows
        assert scores["is_anomaly"].mean() == pytest.approx(1 - float(q), abs=1 / len(scores))
        values[q] = t.value
    assert values["0.9"] < values["0.99"]
    assert load_bundle(copy).manifest.threshold.method == "pot"  # -o left the original alone


def test_recalibrating_with_smoothing_sets_the_threshold_on_smoothed_scores(copy, history, tmp_path):
    data = tmp_path / "normal.csv"
    history.to_csv(data, index=False)
    args = [
        "calibrate",
        str(copy),
        str(data),
        "--threshold",
        "sigma",
        "--sigma-k",
        "3",
        "--ewma-alpha",
        "0.5",
    ]
    assert main(args) == 0
    t = load_bundle(copy).manifest.threshold
    assert (t.method, t.params["k"], t.ewma_alpha) == ("sigma", 3.0, 0.5)
    scores = score_frame(pd.read_csv(data), Scorer.load(copy, load_settings()), "h")["score"].to_numpy()
    assert t.value == pytest.approx(scores.mean() + 3 * scores.std(ddof=1), rel=1e-12)


def test_labelled_windows_are_left_out_of_recalibration(copy, history, tmp_path):
    dirty = history.head(1000).assign(label=0)
    dirty.loc[dirty.index[500:510], ["flow", "label"]] = [500.0, 1]
    data = tmp_path / "normal.csv"
    dirty.to_csv(data, index=False)
    assert main(["calibrate", str(copy), str(data), "--threshold", "quantile", "--quantile", "0.999"]) == 0
    m = load_bundle(copy).manifest
    # 10 labelled rows over two keys: 5 per key, each in 20 + 5 - 1 windows of 20
    assert m.threshold.calibration_windows == 2 * (500 - 20 + 1) - 2 * (20 + 5 - 1)
    assert m.threshold.value < 10 * m.metrics["calibration_score_median"]  # the +500 rows stayed out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantile", "1.5"], "invalid configuration:\n  --quantile: "),
        (["--ewma-alpha", "0"], "invalid configuration:\n  --ewma-alpha: "),
        (["--threshold", "median"], None),  # argparse: invalid choice, exit status 2
        (["--quantile", "0.9"], "--quantile is a parameter of --threshold quantile, but the method is pot"),
        (["--threshold", "pot", "--target-far", "0.5"], "target_far=0.5 is not rarer than"),
    ],
)
def test_bad_flags_fail_naming_the_flag_and_leave_the_bundle(copy, history, tmp_path, capsys, args, message):
    data = tmp_path / "normal.csv"
    history.head(2000).to_csv(data, index=False)
    manifest = (copy / "manifest.json").read_text()
    if message is None:
        with pytest.raises(SystemExit) as exc:
            main(["calibrate", str(copy), str(data), *args])
        err = capsys.readouterr().err  # argparse's wording, naming the flag and the value
        assert exc.value.code == 2 and "--threshold" in err and "'median'" in err
    else:
        assert main(["calibrate", str(copy), str(data), *args]) == 2
        assert message in capsys.readouterr().err
    assert (copy / "manifest.json").read_text() == manifest


def test_bad_files_fail_naming_the_file(copy, history, tmp_path, capsys):
    data = tmp_path / "normal.csv"
    assert main(["calibrate", str(copy), str(data)]) == 2
    assert f"{data}: no such file" in capsys.readouterr().err
    history.drop(columns="flow").head(500).to_csv(data, index=False)
    assert main(["calibrate", str(copy), str(data)]) == 2
    assert f"{data}: missing feature column(s) ['flow']" in capsys.readouterr().err
    history.head(30).to_csv(data, index=False)  # 15 readings per key: no window of 20
    assert main(["calibrate", str(copy), str(data)]) == 2
    assert f"{data}: no complete window of 20 normal readings" in capsys.readouterr().err
    history.head(60).to_csv(data, index=False)  # 2 × 11 windows: too few for a POT tail
    assert main(["calibrate", str(copy), str(data)]) == 2
    assert (
        f"{data}: threshold calibration on 22 windows failed: pot calibration: only 3"
        in capsys.readouterr().err
    )
    assert main(["calibrate", str(tmp_path / "nope"), str(data)]) == 2
    assert f"bundle {tmp_path / 'nope'}: missing manifest.json" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    assert main(["calibrate", str(copy), str(data), "-o", str(tmp_path / "notes")]) == 2
    assert f"{tmp_path / 'notes'}: exists and is no bundle" in capsys.readouterr().err
    assert json.loads((copy / "manifest.json").read_text())["threshold"]["method"] == "pot"
