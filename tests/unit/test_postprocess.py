"""Streaming post-processing per key: record-high output, the range rule, the likelihood and
the quiet period — the same whatever the micro-batches, and across a restart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamae.core import postprocess
from streamae.core.manifest import PostSpec
from streamae.core.stream_state import StreamState

F = 2
ALL = PostSpec(
    likelihood=True,
    record_high=True,
    record_half_life=20,
    range_widen=0.05,
    range_lo=[0.0, 0.0],
    range_hi=[1.0, 1.0],
    suppress_windows=3,
)


def stream(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    keys = rng.choice(["a", "b", "c"], n).astype(object)
    ratio = rng.gamma(2.0, 0.2, n)
    ratio[rng.random(n) < 0.03] *= 20  # excursions
    newest = rng.uniform(0, 1, (n, F))
    newest[rng.random(n) < 0.02] += 3.0  # readings beyond the training range
    return keys, ratio, newest


@pytest.mark.parametrize(
    "spec",
    [
        PostSpec(record_high=True, record_half_life=20),
        PostSpec(range_widen=0.05, range_lo=[0, 0], range_hi=[1, 1]),
        PostSpec(suppress_windows=4),
        PostSpec(likelihood=True),
        ALL,
    ],
    ids=["record_high", "range", "suppress", "likelihood", "all"],
)
@pytest.mark.parametrize("chunks", [7, 400])
def test_micro_batches_and_a_restart_change_nothing(spec, chunks):
    keys, ratio, newest = stream()
    whole = postprocess.apply(spec, keys, ratio, newest, postprocess.new_state())
    state = postprocess.new_state()
    parts = []
    for i, idx in enumerate(np.array_split(np.arange(len(keys)), chunks)):
        if i % 3 == 2:  # a restart: the state goes through JSON (the state topic) and back
            state = json.loads(json.dumps(state))
        parts.append(postprocess.apply(spec, keys[idx], ratio[idx], newest[idx], state))
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-12)


def test_inactive_spec_is_the_identity():
    keys, ratio, newest = stream(20)
    assert postprocess.apply(PostSpec(), keys, ratio, newest, None) is ratio


def test_record_high_reports_the_onset_of_an_excursion_not_its_plateau():
    spec = PostSpec(record_high=True, record_half_life=10)
    ratio = np.array([0.5, 0.4, 3.0, 3.0, 3.0, 2.9] + [0.1] * 60 + [2.0])
    out = postprocess.apply(
        spec, np.array(["k"] * len(ratio), dtype=object), ratio, np.zeros((len(ratio), F)), None
    )
    assert out[:6].tolist() == [0.5, 0.0, 3.0, 0.0, 0.0, 0.0]
    assert out[-1] == 2.0  # the record of 3.0 has halved six times since: 2.0 is news again


def test_the_range_rule_flags_readings_outside_the_widened_running_range():
    spec = PostSpec(range_widen=0.1, range_lo=[0.0, 10.0], range_hi=[1.0, 20.0])
    newest = np.array([[0.5, 15.0], [1.05, 15.0], [1.2, 15.0], [1.25, 15.0], [0.5, 8.0]])
    ratio = np.full(5, 0.2)
    out = postprocess.apply(spec, np.array(["k"] * 5, dtype=object), ratio, newest, None)
    assert out[0] == 0.2 and out[1] == 0.2  # inside [0 - 0.1, 1 + 0.1]
    # the range grew to [0, 1.05] with reading 1: 1.2 is beyond 1.05 + 0.105 by 0.045 / 1.05 of it
    assert out[2] == pytest.approx(1 + (1.2 - 1.155) / 1.05)
    assert out[3] == 0.2  # the range now reaches 1.2: 1.25 is inside it widened
    assert out[4] > 1  # second feature below 10 - 1.0


def test_quiet_period_suppresses_the_next_flags_of_the_same_key_only():
    spec = PostSpec(suppress_windows=2)
    keys = np.array(["a", "b", "a", "a", "b", "a", "a"], dtype=object)
    ratio = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.5])
    out = postprocess.apply(spec, keys, ratio, np.zeros((7, F)), None)
    assert (out > 1).tolist() == [True, True, False, False, False, True, False]


def test_likelihood_flags_a_jump_against_the_keys_own_history():
    spec = PostSpec(likelihood=True, likelihood_alpha=0.01, likelihood_short_alpha=0.5, likelihood_far=1e-3)
    rng = np.random.default_rng(1)
    ratio = np.r_[rng.uniform(0.2, 0.4, 500), [5.0, 5.0]]
    out = postprocess.apply(
        spec, np.array(["k"] * len(ratio), dtype=object), ratio, np.zeros((len(ratio), F)), None
    )
    assert (out[100:500] < 1).all()
    assert out[-1] > 1


def test_forgetting_keys_drops_their_state():
    state = postprocess.new_state()
    keys, ratio, newest = stream(50)
    postprocess.apply(ALL, keys, ratio, newest, state)
    postprocess.forget(state, ["a", "b"])
    assert all(set(part) <= {"c"} for part in state.values())


def test_a_trained_bundle_records_its_post_processing_and_score_agrees_with_streaming(
    history, make_stream, post_bundle, scorer_of
):
    from streamae.core.offline import frame_windows, score_frame

    scorer = scorer_of(post_bundle)
    post = scorer.manifest.postprocess
    features = scorer.manifest.features
    assert post.record_high and post.range_widen == 0.05 and post.suppress_windows == 2
    # the range of the training rows (the first 70 % of the history): inside the history's own
    lo, hi = history[features].min().to_numpy(), history[features].max().to_numpy()
    assert (np.array(post.range_lo) >= lo - 1e-4).all() and (np.array(post.range_hi) <= hi + 1e-4).all()
    assert (np.array(post.range_lo) < np.array(post.range_hi)).all()

    frame = make_stream(24, 2, seed=4).frame
    offline = score_frame(frame, scorer, "s")
    # in micro-batches, the per-key state carried from one to the next (the daemon itself, across
    # a restart: tests/unit/serving/test_post_state.py)
    windows = frame_windows(frame, features, 10, 1, "s")
    state = StreamState()
    by_offset = {}
    for idx in np.array_split(np.arange(len(windows)), 9):
        part = windows.select(idx)
        _, final = scorer.stream(part, state)
        by_offset.update(zip(part.last_offset.tolist(), final.tolist()))
    assert [by_offset[o] for o in offline["source_offset_end"]] == offline["score"].tolist()
    assert (offline["score"] == 0).mean() > 0.5  # record-high output: most windows report 0
    assert offline["is_anomaly"].any()
