"""Label-free selection of the detector (``streamae train`` without ``--variant``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from streamae.cli import main
from streamae.core.bundle import load_bundle
from streamae.core.config import VARIANTS, ConfigError, TrainSettings
from streamae.core.manifest import WindowScore
from streamae.training import candidates, faults, selection
from streamae.training.candidates import ModelChoice, Search, plan
from streamae.training.faulted_stream import MIN_FAULTS, REPLICAS, FaultedStream
from streamae.training.fit import export_onnx, fit, onnx_reconstruct, torch_reconstruct
from streamae.training.models import PCAReconstructor, build_model
from streamae.training.selection import select_and_fit

T0 = 1_767_225_600.0
SENSORS = ["a", "b", "c", "d", "e"]
# a one-factor PCA sees every broken correlation; one with a component per sensor
# reconstructs any reading exactly and sees nothing: the crippled candidate
SHARP, BLIND = ModelChoice("pca", 1, 1), ModelChoice("pca", 1, len(SENSORS))
TINY = Search((BLIND, SHARP), (WindowScore(),))


def readings(n: int = 1500, keys: int = 2, seed: int = 0) -> pd.DataFrame:
    """Five sensors that all follow one slow factor, with a little noise of their own."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(keys):
        factor = np.sin(np.arange(n) / 40 + k) + 0.3 * np.cumsum(rng.normal(0, 0.05, n))
        values = np.outer(factor, [1.0, 2.0, -1.0, 0.5, 1.5]) + rng.normal(0, 0.05, (n, len(SENSORS)))
        frame = pd.DataFrame(values + 10, columns=SENSORS)
        frame.insert(0, "timestamp", T0 + 60.0 * np.arange(n))
        frame.insert(1, "key", f"m{k}")
        frames.append(frame)
    return pd.concat(frames).sort_values(["timestamp", "key"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return readings()


@pytest.fixture
def tiny(monkeypatch):
    """Every search breadth is the two PCA candidates (fast, and one of them cannot see)."""
    monkeypatch.setattr(candidates, "SEARCHES", {name: TINY for name in ("quick", "default", "wide")})


def test_selection_picks_the_candidate_that_sees_the_faults(tiny, history, tmp_path):
    result = select_and_fit(history, tmp_path / "b", TrainSettings(variant="auto"), progress=False)
    m = load_bundle(tmp_path / "b").manifest
    sel = m.selection
    assert sel is not None and len(sel.candidates) == 2
    blind, sharp = (c for c in sel.candidates)
    assert (blind.settings.code, sharp.settings.code) == (len(SENSORS), 1)
    assert sharp.scores.f1 > 0.5 > blind.scores.f1 + 0.3
    assert sel.chosen == 1 and m.variant == "pca" and m.window == 1 and m.code_size == 1
    assert sel.metric == "f1" and sel.faults > 0 and 0 < sel.labelled_windows < sel.windows
    assert set(sel.fault_kinds) == set(faults.KINDS) and sel.seed == 0
    assert result.bundle.manifest == m
    assert m.training["variant"] == "pca" and m.training["code"] == 1  # the winner's settings


def test_a_short_history_is_copied_until_enough_faults_fit(tiny, history, tmp_path):
    """Two keys of 225 validation readings hold one fault each per copy: 16 faults in the
    usual 8 copies would make the choice mostly chance, so there are more copies; a long
    history keeps the usual 8."""
    short = select_and_fit(history, tmp_path / "s", TrainSettings(variant="auto"), progress=False)
    sel = short.bundle.manifest.selection
    assert sel.replicas == MIN_FAULTS // 2 and sel.faults >= 0.9 * MIN_FAULTS
    long = select_and_fit(
        readings(12_000, keys=1), tmp_path / "l", TrainSettings(variant="auto"), progress=False
    )
    assert long.bundle.manifest.selection.replicas == REPLICAS >= MIN_FAULTS / (1800 // 200)


def test_the_winner_is_the_bundle_fit_writes_with_its_settings(tiny, history, tmp_path):
    """Same split, same seeds: the chosen bundle is exactly what ``fit`` gives the winner."""
    chosen = select_and_fit(history, tmp_path / "s", TrainSettings(variant="auto", seed=4), progress=False)
    training = chosen.bundle.manifest.training
    cfg = TrainSettings.model_validate({k: training[k] for k in TrainSettings.model_fields})
    pinned = fit(history, tmp_path / "f", cfg, progress=False)
    assert pinned.bundle.model_bytes == chosen.bundle.model_bytes
    assert pinned.bundle.manifest.threshold == chosen.bundle.manifest.threshold
    assert pinned.bundle.manifest.selection is None


def test_labels_only_leave_windows_out(tiny, history, tmp_path, monkeypatch):
    """A history label removes the windows touching it from judgment, and nothing else:
    the labels judged are the injected faults' (monkeypatched spy on ``judge``)."""
    seen: dict[str, list[np.ndarray]] = {"plain": [], "labelled": []}
    judge = selection.judge
    run = "plain"

    def spy(labels, scores, threshold):
        seen[run].append(labels.copy())
        return judge(labels, scores, threshold)

    monkeypatch.setattr(selection, "judge", spy)
    plain = select_and_fit(history, tmp_path / "p", TrainSettings(variant="auto"), progress=False)
    labelled = history.assign(label=0)
    # a labelled stretch in the validation part of machine m1's history
    rows = labelled.index[(labelled["key"] == "m1")][1100:1120]
    labelled.loc[rows, "label"] = 1
    labelled.loc[rows, SENSORS] = 1e6  # were these readings used, nothing would be normal
    run = "labelled"
    chose = select_and_fit(labelled, tmp_path / "l", TrainSettings(variant="auto"), progress=False)
    assert len(seen["plain"]) == len(seen["labelled"]) == 2
    readings = {
        run: r.bundle.manifest.selection.windows for run, r in (("plain", plain), ("labelled", chose))
    }
    # window 1: every validation reading is judged, but for the 20 labelled ones in each of
    # the copies; what is judged is the injected faults, in both runs alike
    assert all(len(labels) == readings["plain"] for labels in seen["plain"])
    copies = chose.bundle.manifest.selection.replicas
    assert all(len(labels) == readings["labelled"] - copies * 20 for labels in seen["labelled"])
    assert 0.8 < seen["labelled"][0].mean() / seen["plain"][0].mean() < 1.25
    assert chose.bundle.manifest.selection.chosen == plain.bundle.manifest.selection.chosen


def test_no_label_column_and_an_all_zero_one_choose_alike(tiny, history, tmp_path):
    a = select_and_fit(history, tmp_path / "a", TrainSettings(variant="auto"), progress=False)
    b = select_and_fit(history.assign(label=0), tmp_path / "b", TrainSettings(variant="auto"), progress=False)
    sa, sb = a.bundle.manifest.selection, b.bundle.manifest.selection
    assert sa is not None and sb is not None and sa.chosen == sb.chosen
    assert [(c.settings, c.scores, c.threshold) for c in sa.candidates] == [
        (c.settings, c.scores, c.threshold) for c in sb.candidates
    ]


def test_plan_keeps_what_the_user_pinned():
    cfg = TrainSettings(variant="auto", window=12, feature_norm=True)
    search = plan(cfg, ["window", "feature_norm"])
    assert {m.window for m in search.models} == {12}
    assert len(search.models) == len({m.variant for m in search.models})  # windows collapsed
    assert all(s.feature_norm for s in search.scores)
    assert all(m.variant != "pca" for m in plan(TrainSettings(loss="bce"), ()).models)
    # one reading has no time to weight: recent and uniform are one candidate there
    assert candidates.scores_for_window([WindowScore(time_weighting="recent"), WindowScore()], 1, 3) == [
        WindowScore()
    ]
    # nor a cross-sensor residual beside itself; and one sensor has no residual across sensors
    resid = WindowScore(time_weighting="recent", reading_residual=True)
    assert candidates.scores_for_window([resid], 1, 3) == [WindowScore()]
    assert candidates.scores_for_window([resid, WindowScore(time_weighting="recent")], 10, 1) == [
        WindowScore(time_weighting="recent")
    ]
    assert candidates.scores_for_window([resid], 10, 2) == [resid]
    pinned = candidates.scores_for_window([resid], 1, 3, ["reading_residual"])
    assert pinned == [WindowScore(reading_residual=True)]  # what the user pins is kept


def test_residual_candidates_are_judged_and_a_pinned_residual_needs_two_features(
    history, tmp_path, monkeypatch
):
    search = Search((ModelChoice("pca", 5, 1),), (WindowScore(), WindowScore(reading_residual=True)))
    monkeypatch.setattr(candidates, "SEARCHES", {name: search for name in ("quick", "default", "wide")})
    result = select_and_fit(history, tmp_path / "r", TrainSettings(variant="auto"), progress=False)
    sel = result.bundle.manifest.selection
    assert [c.settings.reading_residual for c in sel.candidates] == [False, True]
    assert all(0 <= c.scores.f1 <= 1 and c.threshold > 0 for c in sel.candidates)
    won = sel.candidates[sel.chosen].settings.reading_residual
    assert result.bundle.manifest.score.reading_residual == won
    one = history[["timestamp", "key", "a"]]
    cfg = TrainSettings(variant="auto", reading_residual=True)
    with pytest.raises(ConfigError, match="--reading-residual needs 2 or more features"):
        select_and_fit(one, tmp_path / "one", cfg, progress=False)


@pytest.mark.parametrize("search", ["quick", "default", "wide"])
def test_every_search_has_per_reading_and_windowed_candidates(search):
    models = candidates.SEARCHES[search].models
    assert any(m.window == 1 for m in models) and any(m.window >= 10 for m in models)
    assert any(s.time_weighting == "recent" for s in candidates.SEARCHES[search].scores)
    assert len(candidates.SEARCHES["quick"].models) < len(models) or search == "quick"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("window", [1, 2])
def test_every_variant_works_on_single_readings(variant, window):
    """Window 1 (per-reading models) is a legal candidate for every variant."""
    torch.manual_seed(0)
    model = build_model(variant, window, 3, hidden=8, code=2)
    x = np.random.default_rng(1).normal(size=(16, window, 3)).astype(np.float32)
    if isinstance(model, PCAReconstructor):
        model.fit(x)
    recon, _ = onnx_reconstruct(export_onnx(model, window, 3), x)
    assert recon.shape == x.shape
    np.testing.assert_allclose(recon, torch_reconstruct(model, x)[0], atol=1e-5)


def test_judged_windows_skip_the_tail_of_a_fault():
    """A window whose last reading is past a fault but which still holds some of it is
    neither normal nor faulty: it is not judged."""
    n = 12
    frame = pd.DataFrame({"timestamp": np.arange(n, dtype=float), "key": "k", "x": np.arange(n, dtype=float)})
    labels = np.zeros(n, np.int8)
    labels[5:7] = 1
    stream = FaultedStream(frame, labels, np.arange(n) >= 2, np.ones(n, bool), 1, ("spike",), 0, 1)
    windows, judged = stream.windows(["x"], 3, 1)
    # windows end at rows 2..11; those ending at 7 and 8 still hold row 6 (faulty)
    assert windows.last_offset.tolist() == [2, 3, 4, 5, 6, 9, 10, 11]
    assert judged.tolist() == [0, 0, 0, 1, 1, 0, 0, 0]


def test_cli_selects_without_variant_and_pins_with_it(tiny, history, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STREAMAE_TRAIN__VARIANT", raising=False)
    csv = tmp_path / "h.csv"
    history.to_csv(csv, index=False)
    assert main(["train", str(csv), "-o", str(tmp_path / "auto"), "-q", "--search", "quick"]) == 0
    out = capsys.readouterr().out
    assert "selected pca w1 code 1 (uniform) of 2 candidates (quick search)" in out
    assert load_bundle(tmp_path / "auto").manifest.selection is not None
    # a window given is kept: the search runs at that window only
    assert main(["train", str(csv), "-o", str(tmp_path / "w5"), "-q", "--window", "5"]) == 0
    m = load_bundle(tmp_path / "w5").manifest
    assert m.window == 5 and m.selection is not None and m.selection.pinned == ["window"]
    assert {c.settings.window for c in m.selection.candidates} == {5}

    def no_search(*args, **kwargs):
        raise AssertionError("a pinned variant must not search")

    monkeypatch.setattr(selection, "select_and_fit", no_search)
    argv = ["train", str(csv), "-q", "--window", "5", "--epochs", "1"]
    assert main([*argv, "-o", str(tmp_path / "flag"), "--variant", "dense"]) == 0
    monkeypatch.setenv("STREAMAE_TRAIN__VARIANT", "pca")
    assert main([*argv, "-o", str(tmp_path / "env")]) == 0
    for name, variant in (("flag", "dense"), ("env", "pca")):
        m = json.loads((tmp_path / name / "manifest.json").read_text())
        assert m["variant"] == variant and m["selection"] is None and m["window"] == 5


def test_training_runs_on_the_configured_threads_and_restores_them(history, tmp_path, monkeypatch):
    from streamae.training import pipeline

    seen = []
    train_model = pipeline.train_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return train_model(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_model", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit(history, tmp_path / "b", TrainSettings(variant="pca", window=1), progress=False)
        assert seen == [1] and torch.get_num_threads() == 2
        fit(history, tmp_path / "c", TrainSettings(variant="pca", window=1, threads=0), progress=False)
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)
