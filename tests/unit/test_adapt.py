"""Streaming normalisation per key (core/adapt.py): the guarded running statistics equal a
reading-by-reading reference, and a bundle's scores are the same however the stream is cut
into micro-batches, across a restart, and in `streamae score`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamae.core import adapt
from streamae.core.manifest import AdaptSpec
from streamae.core.stream_state import StreamState

F = 2
SPEC = AdaptSpec(half_life=10, block=4, ref_mean=[1.0, -2.0], ref_std=[2.0, 0.5])


def reference(spec: AdaptSpec, keys, newest, flagged):
    """Window by window in Python: (applied mean, applied spread) each window is corrected
    with, and the final running state per key."""
    d = 0.5 ** (1 / spec.half_life)
    mu, sd = np.array(spec.ref_mean), np.array(spec.ref_std)
    st: dict = {}
    applied = []
    for k, x, flag in zip(keys, newest, flagged):
        n, ma, sa, m, q = st.get(k, (0, np.zeros(F), np.ones(F), np.zeros(F), np.ones(F)))
        applied.append((ma.copy(), sa.copy()))
        if not flag:
            z = (x - mu) / sd
            m, q = d * m + (1 - d) * z, d * q + (1 - d) * z * z
        n += 1
        if n % spec.block == 0:
            ma = m.copy()
            sa = np.clip(np.sqrt(np.maximum(q - m * m, 0)), *adapt.SCALE_LIMITS) if spec.rescale else sa
        st[k] = (n, ma, sa, m, q)
    return applied, st


def run_adapter(spec, keys, newest, flagged, cuts):
    """The adapter over batches cut at ``cuts``, one block level at a time, as Scorer.stream
    runs it; the (mean, spread) each window was corrected with."""
    state: dict = {}
    applied = []
    for idx in np.split(np.arange(len(keys)), cuts):
        a = adapt.Adapter(spec, keys[idx], state)
        out = [None] * len(idx)
        for level in range(int(a.levels.max()) + 1):
            rows = a.levels == level
            for i in np.flatnonzero(rows):
                out[i] = (a.m_applied[a.codes[i]].copy(), a.s_applied[a.codes[i]].copy())
            a.learn(rows, newest[idx][rows], flagged[idx][rows])
        a.save(state)
        state = json.loads(json.dumps(state))  # a restart between batches
        applied += out
    return applied, state


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("cuts", [[], [1, 2, 3, 50], [7, 8, 9, 100, 101, 250], list(range(1, 300))])
def test_the_adapter_equals_a_window_by_window_reference_however_the_stream_is_cut(rescale, cuts):
    rng = np.random.default_rng(3)
    n = 300
    keys = rng.choice(["a", "b", "c"], n).astype(object)
    newest = rng.normal([1.0, -2.0], [2.0, 0.5], (n, F)) + np.linspace(0, 5, n)[:, None]
    flagged = rng.random(n) < 0.2
    spec = SPEC.model_copy(update={"rescale": rescale})
    want, st = reference(spec, keys, newest, flagged)
    got, state = run_adapter(spec, keys, newest, flagged, cuts)
    for (wm, ws), (gm, gs) in zip(want, got):
        np.testing.assert_allclose(gm, wm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gs, ws, rtol=1e-9, atol=1e-12)
    for k, (cnt, ma, sa, m, q) in st.items():
        row = np.array(state[k])
        assert row[0] == cnt
        np.testing.assert_allclose(row[1:], np.r_[ma, sa, m, q], rtol=1e-9, atol=1e-12)


def test_flagged_windows_teach_nothing_and_a_fresh_key_is_not_corrected():
    keys = np.array(["a"] * 8, dtype=object)
    newest = np.full((8, F), 100.0)
    state: dict = {}
    a = adapt.Adapter(SPEC, keys, state)
    data = np.full((8, 3, F), 5.0, np.float32)
    np.testing.assert_allclose(a.correct(data, np.ones(8, bool)), data, rtol=1e-6)  # identity at first
    a.learn(a.levels == 0, newest[:4], np.ones(4, bool))
    a.learn(a.levels == 1, newest[4:], np.ones(4, bool))
    a.save(state)
    assert state["a"] == [8, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_levels_count_block_boundaries_from_each_keys_position():
    codes = np.array([0, 1, 0, 0, 1, 0])
    seen = np.array([2, 0])
    # key 0 at windows 2, 3 | 4, 5; key 1 at windows 0, 1
    assert adapt.levels(codes, seen, 2).tolist() == [0, 0, 0, 1, 0, 1]


@pytest.fixture(scope="module")
def adaptive(adaptive_bundle, scorer_of):
    return scorer_of(adaptive_bundle)


@pytest.mark.parametrize("pieces", [1, 3, 17, 200])
def test_a_bundles_scores_are_the_same_however_the_stream_is_cut_and_across_restarts(
    adaptive, make_stream, pieces
):
    from streamae.core.offline import frame_windows, score_frame

    m = adaptive.manifest
    assert m.adapt.half_life == 30 and m.adapt.block == 5 and len(m.adapt.ref_mean) == len(m.features)
    frame = make_stream(12, 2, seed=4).frame
    offline = score_frame(frame, adaptive, "s")
    windows = frame_windows(frame, m.features, m.window, m.stride, "s")
    state = StreamState()
    by_offset = {}
    rng = np.random.default_rng(pieces)
    cuts = np.sort(rng.choice(np.arange(1, len(windows)), pieces - 1, replace=False))
    for idx in np.split(np.arange(len(windows)), cuts):
        part = windows.select(idx)
        for msg in adaptive.messages(part, adaptive.score(part.data), 3, state):
            by_offset[msg["source"]["offset_end"]] = (msg["score"], msg["raw_score"])
        saved = json.loads(json.dumps(state.saved()))  # a restart: the saved form, restored
        state = StreamState()
        state.update(*saved)
    assert [by_offset[o][0] for o in offline["source_offset_end"]] == offline["score"].tolist()
    assert [by_offset[o][1] for o in offline["source_offset_end"]] == offline["raw_score"].tolist()
    assert set(state.adapt) == set(frame["key"])


def test_normalisation_changes_the_scores_only_when_on(adaptive, make_stream):
    from streamae.core.offline import score_frame

    frame = make_stream(12, 2, seed=4).frame
    on = score_frame(frame, adaptive, "s")
    adaptive.manifest = adaptive.manifest.model_copy(update={"adapt": AdaptSpec()})
    try:
        assert not adaptive.adaptive
        off = score_frame(frame, adaptive, "s")
    finally:
        adaptive.manifest = adaptive.manifest.model_copy(update={"adapt": AdaptSpec(half_life=30, block=5)})
    assert len(on) == len(off)
    # the first block of each key is scored at the training statistics
    first = on.groupby("key").head(5).index
    np.testing.assert_allclose(on.loc[first, "raw_score"], off.loc[first, "raw_score"], rtol=1e-5)
    assert not np.allclose(on["raw_score"], off["raw_score"], rtol=1e-3)


def test_forgotten_keys_lose_their_normalisation_state():
    state = StreamState()
    a = adapt.Adapter(SPEC, np.array(["a", "b"], dtype=object), state.adapt)
    a.save(state.adapt)
    state.forget(["a"])
    assert set(state.adapt) == {"b"}
