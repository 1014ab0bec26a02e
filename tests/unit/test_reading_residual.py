"""The cross-sensor residual of a window's newest reading, added beside its window error
(``score.reading_residual``): how training sets it up, and that the graph computes it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from streamae.core.bundle import Bundle
from streamae.core.config import ConfigError, TrainSettings
from streamae.core.manifest import ScoreSpec
from streamae.core.scoring import Scorer
from streamae.core.window_score import ReadingResidual, pool_features
from streamae.evaluation.inspect import describe_manifest
from streamae.training.fit import fit
from streamae.training.manifest_fields import residual_axes, residual_weight

CPU = ["CPUExecutionProvider"]
WINDOW = 10


def _correlated(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Six sensors driven by two shared factors, and a little noise of their own."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(n, 6))
    frame = pd.DataFrame(x, columns=[f"s{i}" for i in range(6)])
    frame.insert(0, "timestamp", np.arange(n, dtype=float))
    return frame, x


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    frame, x = _correlated()
    root = tmp_path_factory.mktemp("residual")
    out = {}
    for residual in (False, True):
        cfg = TrainSettings(variant="dense", window=WINDOW, epochs=5, seed=2, reading_residual=residual)
        out[residual] = fit(frame, root / str(residual), cfg, progress=False).bundle
    return out, x


def test_the_axes_explain_most_of_the_variance_and_leave_a_residual():
    _, x = _correlated()
    axes = residual_axes(x)
    comps = np.asarray(axes["residual_components"])
    assert comps.shape == (6, 2)  # two factors explain over 95 %
    np.testing.assert_allclose(comps.T @ comps, np.eye(2), atol=1e-9)
    np.testing.assert_allclose(axes["residual_center"], x.mean(axis=0))
    # one axis explains everything: still fewer than all, so something is left to score
    line = np.outer(np.arange(50.0), [1.0, 2.0, 3.0])
    assert np.asarray(residual_axes(line)["residual_components"]).shape == (3, 1)
    with pytest.raises(ValueError, match="2 or more features"):
        residual_axes(x[:, :1])


def test_weights_make_the_residual_as_large_as_the_window_error_on_normal_windows():
    errors = np.array([[2.0, 4.0], [4.0, 8.0]])
    residuals = np.array([[1.0, 0.0], [1.0, 0.0]])  # the second sensor's residual is always 0
    assert residual_weight(errors, residuals) == pytest.approx([3.0, 1e3])  # floored: see its docstring


def test_training_writes_the_residual_and_the_graph_adds_it(trained):
    bundles, x = trained
    plain, resid = bundles[False], bundles[True]
    spec = resid.manifest.score
    assert spec.reading_residual and not plain.manifest.score.reading_residual
    assert len(spec.residual_components) == 6 and len(spec.residual_components[0]) == 2
    scorer, without = Scorer(resid, CPU), Scorer(plain, CPU)
    windows = np.stack([x[i : i + WINDOW] for i in range(2000, 2100)]).astype(np.float32)
    got = scorer.score(windows)
    # the same graph without the residual gives the window part; the host formula adds it
    window_part = Scorer(_without_residual(resid), CPU).score(windows).feature_errors
    want = ReadingResidual.of(spec).add_to(window_part, scorer.scale(windows))  # type: ignore[union-attr]
    np.testing.assert_allclose(got.feature_errors, want, rtol=2e-5, atol=1e-9)
    scale = np.asarray(resid.manifest.feature_error_scale, np.float32)
    np.testing.assert_allclose(got.scores, pool_features(want, spec, scale), rtol=2e-5)
    assert (got.feature_errors >= window_part).all() and (got.feature_errors > window_part).mean() > 0.9
    # on normal windows the residual part is about as large as the window part, by its weights
    ratio = (got.feature_errors - window_part).mean(axis=0) / window_part.mean(axis=0)
    assert 0.3 < float(np.median(ratio)) < 3.0
    assert without.score(windows).feature_errors.mean() < got.feature_errors.mean()


@pytest.mark.parametrize(
    "settings",
    [
        {"variant": "pca", "time_weighting": "recent", "feature_norm": True, "feature_pool": "max"},
        {"variant": "dense", "loss": "bce", "epochs": 2},  # min-max scaled inputs: not centred
    ],
)
def test_the_graph_adds_the_residual_on_every_branch(settings, tmp_path):
    frame, x = _correlated(1500, seed=3)
    cfg = TrainSettings(window=WINDOW, seed=1, reading_residual=True, **settings)
    bundle = fit(frame, tmp_path / "b", cfg, progress=False).bundle
    scorer = Scorer(bundle, CPU)
    windows = np.stack([x[i : i + WINDOW] for i in range(1000, 1064)]).astype(np.float32)
    window_part = Scorer(_without_residual(bundle), CPU).score(windows).feature_errors
    want = ReadingResidual.of(bundle.manifest.score).add_to(window_part, scorer.scale(windows))  # type: ignore[union-attr]
    np.testing.assert_allclose(scorer.score(windows).feature_errors, want, rtol=2e-5, atol=1e-9)


def test_the_manifest_records_the_residual_only_when_it_is_on(trained):
    bundles, _ = trained
    plain = json.loads((bundles[False].path / "manifest.json").read_text())["score"]
    assert not any("residual" in k for k in plain)  # a daemon that predates it still reads it
    resid = json.loads((bundles[True].path / "manifest.json").read_text())["score"]
    assert resid["reading_residual"] is True and len(resid["residual_weight"]) == 6


def test_a_score_spec_refuses_half_a_residual():
    with pytest.raises(ValidationError, match="residual_weight given, but reading_residual is false"):
        ScoreSpec(residual_weight=[1.0, 1.0])
    with pytest.raises(ValidationError, match="reading_residual needs residual_weight"):
        ScoreSpec(reading_residual=True, residual_center=[0.0, 0.0], residual_components=[[1.0], [0.0]])
    with pytest.raises(ValidationError, match="one width k >= 1"):
        ScoreSpec(
            reading_residual=True,
            residual_center=[0.0, 0.0],
            residual_components=[[1.0], [0.0, 1.0]],
            residual_weight=[1.0, 1.0],
        )


def test_a_newest_reading_off_the_sensors_correlation_scores_far_higher_with_the_residual(trained):
    bundles, x = trained
    windows = np.stack([x[i : i + WINDOW] for i in range(2000, 2200)]).astype(np.float32)
    broken = windows.copy()
    broken[:, -1, 0] += 1.0  # one sensor leaves the others, within its own normal range
    rise = {}
    for residual, bundle in bundles.items():
        scorer = Scorer(bundle, CPU)
        rise[residual] = scorer.score(broken).scores.mean() / scorer.score(windows).scores.mean()
    assert rise[True] > 2.0 and rise[True] > 2 * rise[False]


def test_a_window_scores_the_same_in_any_micro_batch(trained):
    """The daemon scores whatever windows a micro-batch holds: the residual's matrix products
    must not make a window's score depend on its neighbours."""
    bundles, x = trained
    scorer = Scorer(bundles[True], CPU)
    windows = np.stack([x[i : i + WINDOW] for i in range(500, 537)]).astype(np.float32)
    whole = scorer.score(windows)
    for size in (1, 2, 7):
        parts = [scorer.score(windows[i : i + size]) for i in range(0, len(windows), size)]
        np.testing.assert_array_equal(np.concatenate([p.scores for p in parts]), whole.scores)
        np.testing.assert_array_equal(np.concatenate([p.feature_errors for p in parts]), whole.feature_errors)


def test_inspect_says_the_score_adds_the_residual(trained):
    bundles, _ = trained
    text = describe_manifest(bundles[True].manifest)
    assert "plus the newest reading's residual off 2 of 6 principal axes" in text
    assert "residual" not in describe_manifest(bundles[False].manifest)


def test_one_feature_has_no_cross_sensor_residual(tmp_path):
    frame, _ = _correlated(800)
    with pytest.raises(ConfigError, match="--reading-residual needs 2 or more features"):
        fit(frame[["timestamp", "s0"]], tmp_path, TrainSettings(variant="pca", reading_residual=True))


def _without_residual(bundle: Bundle) -> Bundle:
    fields = bundle.manifest.score.model_dump(
        exclude={"residual_center", "residual_components", "residual_weight"}
    )
    score = ScoreSpec.model_validate({**fields, "reading_residual": False})
    return Bundle(bundle.path, bundle.manifest.model_copy(update={"score": score}), bundle.model_bytes)
