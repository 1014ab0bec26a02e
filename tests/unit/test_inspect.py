"""streamae inspect: the manifest in words, the training curve, score histogram and latent view."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pictures import assert_picture

from streamae.cli import main
from streamae.core.bundle import load_bundle
from streamae.core.config import TrainSettings, load_settings
from streamae.core.offline import frame_windows, score_frame, score_windows
from streamae.core.scoring import Scorer
from streamae.evaluation.inspect import latent_points

TRAINING_CURVE, HISTOGRAM, LATENT = (6, 3.5), (7, 3.8), (6, 5)  # figure sizes, inches


@pytest.fixture(scope="module")
def stream(make_stream) -> pd.DataFrame:
    """Twelve hours of both machines with two injected anomalies each."""
    return make_stream(hours=12, anomalies=2, seed=5).frame


@pytest.fixture(scope="module")
def code2_bundle(history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dense bundle whose code is two-dimensional."""
    from streamae.training.fit import fit

    out = tmp_path_factory.mktemp("code2") / "dense2"
    fit(history, out, TrainSettings(window=10, epochs=2, code=2), progress=False)
    return out


def test_inspect_without_data_prints_manifest_and_training_curve(bundle_dir, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)  # the default output lands inside the bundle
    assert main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    t = load_bundle(bundle).manifest.threshold
    assert "variant      dense, loss mse, code size 8" in out
    assert "score        errors over time uniform; mean across features\n" in out
    # the fixture is calibrated by POT at target_far 1e-4
    assert f"threshold    {t.value:.6g} by pot (target_far=0.0001, tail_quantile=0.9, " in out
    assert "need data" in out
    assert_picture(bundle / "inspect" / "training_curve.png", TRAINING_CURVE)
    assert sorted(p.name for p in (bundle / "inspect").iterdir()) == ["training_curve.png"]


def test_inspect_with_labelled_data_writes_histogram_and_latent(bundle_dir, stream, tmp_path, capsys):
    data, out = tmp_path / "s.csv", tmp_path / "insp"
    stream.to_csv(data, index=False)
    assert main(["inspect", str(bundle_dir), str(data), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "variant      dense" in printed and " by pot (" in printed
    scores = score_frame(stream, Scorer.load(bundle_dir, load_settings()), "s")
    labelled = int((stream["label"].to_numpy()[scores["source_offset_end"]] > 0).sum())
    assert 0 < labelled < len(scores)
    assert (
        f"note: {data}: {len(scores)} windows, {int(scores['is_anomaly'].sum())} over threshold, "
        f"{labelled} labelled anomalous"
    ) in printed
    assert_picture(out / "training_curve.png", TRAINING_CURVE)
    assert_picture(out / "score_histogram.png", HISTOGRAM)
    assert_picture(out / "latent.png", LATENT)


def test_inspect_and_evaluate_flag_what_serve_flags_on_a_post_processed_bundle(
    post_bundle, stream, tmp_path, capsys, scorer_of
):
    """Post-processing (record-high output, the running range, suppression) changes which
    windows cross the threshold: ``inspect`` and ``evaluate`` count the windows that
    ``streamae score`` flags, which are those ``serve`` flags (tests/unit/serving/test_post_state.py)."""
    import json

    data = tmp_path / "s.csv"
    stream.to_csv(data, index=False)
    scorer = scorer_of(post_bundle)
    flagged = int(score_frame(stream, scorer, "s")["is_anomaly"].sum())
    _, before_post = score_windows(scorer, frame_windows(stream, scorer.manifest.features, 10, 1, "s"))
    assert flagged != int((before_post > scorer.threshold).sum())  # the case this test is about
    assert main(["inspect", str(post_bundle), str(data), "-o", str(tmp_path / "o")]) == 0
    assert f"windows, {flagged} over threshold," in capsys.readouterr().out
    assert main(["evaluate", str(post_bundle), str(data), "-o", str(tmp_path / "e")]) == 0
    point = json.loads((tmp_path / "e" / "report.json").read_text())["pooled"]["point"]
    assert point["true_positive_windows"] + point["false_positive_windows"] == flagged


def test_inspect_with_unlabelled_data(code2_bundle, history, tmp_path, capsys):
    data = tmp_path / "h.csv"
    history.head(600).to_csv(data, index=False)
    assert main(["inspect", str(code2_bundle), str(data), "-o", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "code size 2" in printed and "labelled anomalous" not in printed
    assert_picture(tmp_path / "o" / "latent.png", LATENT)


def test_inspect_with_too_little_data_says_so(bundle_dir, history, tmp_path, capsys):
    data = tmp_path / "h.csv"
    history.head(10).to_csv(data, index=False)  # 10 readings: no window of 20
    assert main(["inspect", str(bundle_dir), str(data), "-o", str(tmp_path / "o")]) == 0
    assert "0 complete window(s) of 20; need 2 for the data plots" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["training_curve.png"]


def test_latent_points_pca_for_wide_codes(bundle_dir, stream, scorer_of):
    scorer = scorer_of(bundle_dir)
    m = scorer.manifest
    windows = frame_windows(stream, m.features, m.window, m.stride, "s")
    _, scores = score_windows(scorer, windows)
    points, xlabel, ylabel = latent_points(scorer.encode(windows.data), scores)
    assert points.shape == (len(windows), 2)
    assert xlabel.startswith("PCA 1 of the 8-d code") and ylabel.startswith("PCA 2 of the 8-d code")


def test_latent_points_direct_for_two_dimensional_codes(code2_bundle, stream, scorer_of):
    scorer = scorer_of(code2_bundle)
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


@pytest.fixture(scope="module")
def selected_bundle(history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle chosen by a two-candidate selection (per-reading PCA, 1 or all components)."""
    from streamae.core.manifest import WindowScore
    from streamae.training import candidates
    from streamae.training.candidates import ModelChoice, Search
    from streamae.training.selection import select_and_fit

    models = (ModelChoice("pca", 1, 5), ModelChoice("pca", 1, 1))
    search = Search(models, (WindowScore(), WindowScore(time_weighting="recent")))
    out = tmp_path_factory.mktemp("selected") / "auto"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(candidates, "SEARCHES", {"quick": search})
        select_and_fit(history, out, TrainSettings(variant="auto", search="quick"), progress=False)
    return out


def test_inspect_prints_the_selection_table(selected_bundle, tmp_path, capsys):
    assert main(["inspect", str(selected_bundle), "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    sel = load_bundle(selected_bundle).manifest.selection
    assert sel is not None and len(sel.candidates) == 2  # recent = uniform on one reading
    head = next(line for line in out.splitlines() if line.startswith("selection    "))
    assert "quick search, 2 candidates, by F1 at each one's calibrated threshold" in head
    assert f"on {sel.faults} injected faults in {sel.replicas} copies" in head
    rows = out.split(head + "\n", 1)[1].splitlines()[1:3]  # after the column names, best first
    chosen = sel.candidates[sel.chosen]
    assert rows[0].startswith(f"   * {chosen.settings.describe()}")
    assert f"{chosen.scores.f1:5.3f}" in rows[0] and not rows[1].startswith("   *")
    assert "pca w1 code 1 (uniform)" in rows[0] and "pca w1 code 5 (uniform)" in rows[1]


def test_inspect_of_a_pinned_bundle_has_no_selection(bundle_dir, tmp_path, capsys):
    assert main(["inspect", str(bundle_dir), "-o", str(tmp_path / "o")]) == 0
    assert "selection" not in capsys.readouterr().out
