"""The synthetic fault family that model selection injects into held-out normal readings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamae.training.faults import KINDS, inject

N, F = 600, 4


@pytest.fixture(scope="module")
def normal() -> np.ndarray:
    """Correlated readings: one smooth factor, each feature its own offset, scale and noise."""
    rng = np.random.default_rng(0)
    factor = np.cumsum(rng.normal(0, 0.1, N)) + np.sin(np.arange(N) / 20)
    return 5.0 + np.outer(factor, [1.0, 2.0, -0.5, 3.0]) + rng.normal(0, 0.1, (N, F))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_only_its_rows_and_features(kind, normal):
    out, labels, faults = inject(normal, np.random.default_rng(1), 1, [kind])
    (fault,) = faults
    assert fault.kind == kind
    rows = np.zeros(N, bool)
    rows[fault.start : fault.end + 1] = True
    np.testing.assert_array_equal(labels, rows.astype(np.int8))
    changed = out != normal
    assert changed[rows][:, list(fault.features)].any(), "the fault must show"
    outside = changed.copy()
    outside[np.ix_(rows, list(fault.features))] = False
    assert not outside.any(), "nothing outside the fault's rows and features changes"
    assert (len(fault.features) > 1) == (kind == "group_shift")


@pytest.mark.parametrize("kind", KINDS)
def test_magnitudes_are_relative_to_the_feature_spread(kind, normal):
    """Every kind is affine-equivariant: faults of 10·x + 3 are 10·(faults of x) + 3."""
    out, labels, _ = inject(normal, np.random.default_rng(2), 3, [kind])
    scaled, scaled_labels, _ = inject(10 * normal + 3, np.random.default_rng(2), 3, [kind])
    np.testing.assert_allclose(scaled, 10 * out + 3, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(scaled_labels, labels)


def test_shift_sizes_are_in_sigma_units(normal):
    out, _, faults = inject(normal, np.random.default_rng(3), 6, ["level_shift"])
    sigma = normal.std(axis=0)
    for f in faults:
        (c,) = f.features
        step = (out - normal)[f.start : f.end + 1, c] / sigma[c]
        assert np.allclose(step, step[0]) and 1 <= abs(step[0]) <= 2


def test_faults_never_overlap_and_keep_the_margin(normal):
    _, labels, faults = inject(normal, np.random.default_rng(4), 20, KINDS, margin=15)
    assert len(faults) >= 3
    spans = sorted((f.start, f.end) for f in faults)
    assert spans[0][0] >= 15
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start - end - 1 >= 15
    assert labels.sum() == sum(e - s + 1 for s, e in spans)


def test_deterministic_with_a_seed_and_different_without(normal):
    a = inject(normal, np.random.default_rng(5), 5)
    b = inject(normal, np.random.default_rng(5), 5)
    c = inject(normal, np.random.default_rng(6), 5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2] == b[2] and a[2] != c[2]


def test_levels_come_from_the_normal_readings_not_from_earlier_faults(normal):
    """A dropout reads the *normal* minimum even after a large negative spike elsewhere."""
    rng = np.random.default_rng(7)
    out, _, faults = inject(normal, rng, 8, ["spike", "dropout"] * 4, margin=5)
    for f in faults:
        if f.kind == "dropout":
            (c,) = f.features
            assert np.all(out[f.start : f.end + 1, c] == normal[:, c].min())


def test_the_input_is_left_alone_and_kinds_are_checked(normal):
    before = normal.copy()
    inject(normal, np.random.default_rng(8), 5)
    np.testing.assert_array_equal(normal, before)
    with pytest.raises(ValueError, match="unknown fault kind"):
        inject(normal, np.random.default_rng(8), 1, ["meteor"])


def test_constant_features_get_no_fault_and_a_short_series_fewer():
    flat = np.column_stack([np.ones(50), np.linspace(0, 1, 50)])
    out, _, faults = inject(flat, np.random.default_rng(9), 30, KINDS, margin=3)
    assert all(f.features == (1,) for f in faults)  # group_shift too: one feature varies
    np.testing.assert_array_equal(out[:, 0], flat[:, 0])
    assert 0 < len(faults) < 30  # what does not fit is skipped
    _, labels, none = inject(np.ones((40, 3)), np.random.default_rng(9), 5)
    assert none == [] and not labels.any()
