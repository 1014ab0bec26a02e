from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streamae.core.smoothing import ewma
from streamae.training.calibration import METHODS, calibrate


def test_quantile_is_the_empirical_quantile():
    out = calibrate(np.arange(1.0, 101.0), "quantile", quantile=0.5)
    assert out == {"method": "quantile", "value": 50.5, "quantile": 0.5}


def test_default_method_is_quantile():
    out = calibrate(np.arange(1.0, 101.0))
    assert out["method"] == "quantile"
    assert out["value"] == pytest.approx(np.quantile(np.arange(1.0, 101.0), 0.995))


def test_sigma_is_mean_plus_k_sample_std():
    out = calibrate(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), "sigma", k=2.0)
    # sample variance of 1..5 is 10/4
    assert out["mean"] == pytest.approx(3.0)
    assert out["std"] == pytest.approx(math.sqrt(2.5))
    assert out["value"] == pytest.approx(3.0 + 2.0 * math.sqrt(2.5))
    assert out["k"] == 2.0


def test_pot_on_exponential_tail_matches_true_quantile():
    rng = np.random.default_rng(0)
    q = 1e-3
    out = calibrate(rng.exponential(size=100_000), "pot", target_far=q, tail_quantile=0.9)
    true = -math.log(q)  # exponential survival e^-x
    assert out["value"] == pytest.approx(true, rel=0.15)
    assert abs(out["shape"]) < 0.1  # exponential tail: GPD shape 0
    assert out["scale"] == pytest.approx(1.0, rel=0.1)
    assert out["initial"] == pytest.approx(-math.log(0.1), rel=0.05)
    assert 9_000 < out["excesses"] <= 10_000
    fresh = rng.exponential(size=1_000_000)
    assert np.mean(fresh > out["value"]) == pytest.approx(q, rel=0.3)


def test_pot_on_pareto_tail_extrapolates_beyond_the_sample_quantile():
    rng = np.random.default_rng(1)
    a, q = 3.0, 1e-4
    scores = rng.pareto(a, size=50_000) + 1.0  # survival x^-a for x >= 1
    out = calibrate(scores, "pot", target_far=q, tail_quantile=0.95)
    assert out["shape"] == pytest.approx(1.0 / a, abs=0.1)
    assert out["value"] == pytest.approx(q ** (-1.0 / a), rel=0.15)
    fresh = rng.pareto(a, size=1_000_000) + 1.0
    assert np.mean(fresh > out["value"]) == pytest.approx(q, rel=0.5)


def test_pot_is_above_initial_and_json_ready():
    scores = np.random.default_rng(2).gamma(2.0, size=5_000)
    out = calibrate(scores, "pot", target_far=1e-3)
    assert out["value"] > out["initial"]
    assert set(out) == {
        "method",
        "value",
        "target_far",
        "tail_quantile",
        "initial",
        "shape",
        "scale",
        "excesses",
    }
    assert json.loads(json.dumps(out)) == out
    assert type(out["excesses"]) is int


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_positive_finite_value(method):
    out = calibrate(np.random.default_rng(3).exponential(size=2_000), method)
    assert out["method"] == method
    assert math.isfinite(out["value"]) and out["value"] > 0
    json.dumps(out)


def test_pot_too_few_excesses():
    with pytest.raises(ValueError, match="only 5 scores exceed"):
        calibrate(np.arange(1.0, 51.0), "pot", tail_quantile=0.9)


def test_pot_target_far_not_rarer_than_tail():
    with pytest.raises(ValueError, match="target_far"):
        calibrate(np.random.default_rng(4).exponential(size=1_000), "pot", target_far=0.2)


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.array([1.0, np.inf])])
def test_rejects_empty_and_non_finite(bad):
    with pytest.raises(ValueError):
        calibrate(bad)


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="quantile, sigma, pot"):
        calibrate(np.ones(10), "median")


@pytest.mark.parametrize("method", ["quantile", "sigma"])
def test_all_zero_scores_are_rejected_naming_method(method):
    with pytest.raises(ValueError, match=method):
        calibrate(np.zeros(100), method)


def test_bad_parameters():
    with pytest.raises(ValueError, match="quantile"):
        calibrate(np.ones(10), quantile=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        calibrate(np.ones(1), "sigma")


def _ewma_reference(x, alpha, keys):
    out, last = np.empty(len(x)), {}
    for i, (v, k) in enumerate(zip(x, keys)):
        last[k] = v if k not in last else alpha * v + (1 - alpha) * last[k]
        out[i] = last[k]
    return out


def test_ewma_hand_computed():
    got = ewma(np.array([1.0, 3.0, 2.0, 6.0]), 0.5)
    np.testing.assert_allclose(got, [1.0, 2.0, 2.0, 4.0])


def test_ewma_alpha_one_is_identity():
    x = np.array([0.3, 7.0, 0.1])
    np.testing.assert_array_equal(ewma(x, 1.0), x)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_ewma_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ewma(np.ones(3), alpha)


def test_ewma_rejects_mismatched_keys_and_nan():
    with pytest.raises(ValueError):
        ewma(np.ones(3), 0.5, keys=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="non-finite"):
        ewma(np.array([1.0, np.nan]), 0.5)


def test_ewma_keys_are_independent_when_interleaved():
    keys = np.array(["a", "b", "a", "b", "a"], dtype=object)
    got = ewma(np.array([1.0, 10.0, 3.0, 20.0, 5.0]), 0.5, keys=keys)
    # a: 1, 2, 3.5   b: 10, 15
    np.testing.assert_allclose(got, [1.0, 10.0, 2.0, 15.0, 3.5])


def test_ewma_matches_loop_reference_with_int_keys():
    rng = np.random.default_rng(5)
    x, keys = rng.exponential(size=500), rng.integers(0, 7, size=500)
    np.testing.assert_allclose(ewma(x, 0.2, keys=keys), _ewma_reference(x, 0.2, keys), rtol=1e-12)


@pytest.mark.parametrize("split", [0, 1, 137, 299, 300])
@pytest.mark.parametrize("keyed", [True, False])
def test_ewma_split_with_shared_state_equals_one_call(split, keyed):
    rng = np.random.default_rng(6)
    x = rng.exponential(size=300)
    keys = rng.choice(np.array(["m1", "m2", "m3"]), size=300) if keyed else None
    whole_state: dict = {}
    whole = ewma(x, 0.3, keys=keys, state=whole_state)
    state: dict = {}
    k1, k2 = (keys[:split], keys[split:]) if keyed else (None, None)
    parts = np.concatenate([ewma(x[:split], 0.3, k1, state), ewma(x[split:], 0.3, k2, state)])
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    assert state == pytest.approx(whole_state)
    if keyed:
        assert all(type(k) is str for k in state)
        for k in ("m1", "m2", "m3"):
            assert state[k] == whole[np.flatnonzero(keys == k)[-1]]
    else:
        assert list(state) == [None]
        assert state[None] == whole[-1]


def test_ewma_continues_from_given_state():
    state = {"a": 4.0}
    got = ewma(np.array([6.0, 1.0]), 0.5, keys=np.array(["a", "b"]), state=state)
    np.testing.assert_allclose(got, [5.0, 1.0])
    assert state == {"a": 5.0, "b": 1.0}


def test_ewma_empty():
    state: dict = {}
    assert ewma(np.array([]), 0.5, keys=np.array([], dtype=object), state=state).shape == (0,)
    assert state == {}
