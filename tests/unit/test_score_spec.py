"""How a window's reconstruction errors become its score: time weighting, feature
normalisation and pooling (the bundle's ``score`` section)."""

from __future__ import annotations

import numpy as np
import pytest

from streamae.core.manifest import ScoreSpec
from streamae.core.window_score import feature_errors, pool_features, time_weights

W, F = 8, 3


def test_uniform_weighting_is_the_plain_mean_over_time():
    assert time_weights(ScoreSpec(), W) is None
    rng = np.random.default_rng(0)
    x, recon = rng.normal(size=(5, W, F)), rng.normal(size=(5, W, F))
    np.testing.assert_allclose(feature_errors(x, recon), ((x - recon) ** 2).mean(axis=1))


def test_recent_weights_halve_every_half_life_back_from_the_newest():
    w = time_weights(ScoreSpec(time_weighting="recent", half_life=2), W)
    assert w is not None and w.sum() == pytest.approx(1.0)
    assert w[-1] == pytest.approx(2 * w[-3]) and w[-3] == pytest.approx(2 * w[-5])
    default = time_weights(ScoreSpec(time_weighting="recent"), W)  # half-life W/4
    assert default is not None and default[-1] == pytest.approx(2 * default[-3])


def test_recent_weighting_scores_a_fresh_error_above_an_old_one():
    x = np.zeros((2, W, F))
    recon = np.zeros((2, W, F))
    recon[0, -1, 0] = 3.0  # error in the newest reading
    recon[1, 0, 0] = 3.0  # the same error in the oldest
    uniform = feature_errors(x, recon)[:, 0]
    assert uniform[0] == uniform[1]
    recent = feature_errors(x, recon, time_weights(ScoreSpec(time_weighting="recent"), W))[:, 0]
    assert recent[0] > 10 * recent[1]


def test_normalised_features_let_a_quiet_sensor_count_as_much_as_a_noisy_one():
    normal_mean = np.array([100.0, 1.0, 1.0])  # feature 0 is noisy even when all is well
    errors = np.array([[100.0, 1.0, 1.0], [100.0, 6.0, 1.0]])  # window 1: the quiet one is 6x off
    plain = pool_features(errors, ScoreSpec(), normal_mean)
    assert plain[1] / plain[0] < 1.1  # drowned by the noisy sensor
    norm = pool_features(errors, ScoreSpec(feature_norm=True), normal_mean)
    assert norm[1] / norm[0] == pytest.approx(8 / 3)
    peak = pool_features(errors, ScoreSpec(feature_norm=True, feature_pool="max"), normal_mean)
    assert peak.tolist() == [1.0, 6.0]
