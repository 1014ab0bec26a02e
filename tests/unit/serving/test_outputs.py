"""Score outputs in each form: the same numbers as the per-window contract, thinned or
batched; the alert policy sees every window whatever the form."""

from __future__ import annotations

from dataclasses import replace

import jsonschema
import numpy as np
import orjson
import pytest

from streamae.core.alerts import AlertPolicy
from streamae.core.config import OutputSettings
from streamae.core.messages import json_schema
from streamae.core.scoring import Scorer
from streamae.core.windows import Windows
from streamae.serving.outputs import Scored, build


def windows_of(scorer: Scorer, n: int = 60, keys: int = 3, hot: np.ndarray | None = None) -> Windows:
    """``n`` windows of ``keys`` keys in turn; the ``hot`` ones (default every 4th) far from normal."""
    m = scorer.manifest
    rng = np.random.default_rng(5)
    data = rng.normal(np.asarray(m.scaler.mean), np.asarray(m.scaler.scale), (n, m.window, len(m.features)))
    data[np.arange(n) % 4 == 0 if hot is None else hot] += 50 * np.asarray(m.scaler.scale)
    t = np.arange(n, dtype=np.float64) * 60
    return Windows(
        np.array([f"k{i % keys}" for i in range(n)], dtype=object),
        t,
        t + 60 * (m.window - 1),
        np.arange(n, dtype=np.int64),
        np.arange(n, dtype=np.int64) + m.window - 1,
        data.astype(np.float32),
        "in",
        1,
    )


def scored(scorer: Scorer, w: Windows) -> Scored:
    batch = scorer.score(w.data)
    return Scored.of(scorer, w, batch, batch.scores, 3)


@pytest.fixture
def w(scorer: Scorer) -> Windows:
    return windows_of(scorer)


def test_all_is_the_per_window_contract(scorer, w):
    out = build(scorer, scored(scorer, w), OutputSettings(), "scores")
    reference = scorer.to_messages(w, scorer.score(w.data), scorer.score(w.data).scores, 3)
    docs = [orjson.loads(value) for _, value, _, _ in out.records]
    assert len(docs) == len(w) and not out.too_large
    for doc, ref in zip(docs, reference):
        jsonschema.validate(doc, json_schema("score"))
        assert doc == orjson.loads(orjson.dumps(ref))
    assert [(key, offset, n) for key, _, offset, n in out.records][:2] == [(b"k0", 3, 1), (b"k1", 4, 1)]


def test_above_keeps_the_windows_over_the_fraction_of_the_threshold(scorer, w):
    s = scored(scorer, w)
    t = scorer.threshold
    out = build(scorer, s, OutputSettings(scores="above", above_fraction=0.5), "scores")
    kept = [orjson.loads(value)["source"]["offset_end"] for _, value, _, _ in out.records]
    assert kept == w.last_offset[s.score >= 0.5 * t].tolist()
    assert 0 < len(kept) < len(w) and len(out.policy) == len(w)


def test_batch_holds_each_keys_windows_as_arrays_with_the_same_numbers(scorer, w):
    s = scored(scorer, w)
    out = build(scorer, s, OutputSettings(scores="batch"), "scores")
    docs = [orjson.loads(value) for _, value, _, _ in out.records]
    assert sorted(d["key"] for d in docs) == ["k0", "k1", "k2"]
    assert sum(n for *_, n in out.records) == len(w)
    every = {
        orjson.loads(v)["source"]["offset_end"]: orjson.loads(v)
        for _, v, _, _ in build(scorer, s, OutputSettings(), "scores").records
    }
    for d in docs:
        jsonschema.validate(d, json_schema("score-batch"))
        assert d["offset_end"] == sorted(d["offset_end"])  # window order
        for i, end in enumerate(d["offset_end"]):
            one = every[end]
            assert (d["key"], d["window_end"][i], d["is_anomaly"][i]) == (
                one["key"],
                one["window_end"],
                one["is_anomaly"],
            )
            assert d["score"][i] == pytest.approx(one["score"])
            assert d["top_features"][i] == [f["feature"] for f in one["top_features"]]
            assert d["top_shares"][i] == pytest.approx([f["share"] for f in one["top_features"]])


def test_a_batch_message_over_the_limit_is_split_and_a_window_that_still_is_becomes_a_dead_letter(scorer):
    w = windows_of(scorer, n=400, keys=1)
    s = scored(scorer, w)
    out = build(scorer, s, OutputSettings(scores="batch", max_message_bytes=16_384), "scores")
    assert len(out.records) > 1 and not out.too_large
    assert all(len(k) + len(v) + 256 <= 16_384 for k, v, _, _ in out.records)
    ends = [e for _, v, _, _ in out.records for e in orjson.loads(v)["offset_end"]]
    assert ends == w.last_offset.tolist()  # every window once, in order
    too_long = [f * 1000 for f in s.names]  # no window can fit any more
    out = build(
        scorer, replace(s, names=too_long), OutputSettings(scores="batch", max_message_bytes=16_384), "scores"
    )
    assert out.too_large and not out.records
    assert {r.code for r in out.too_large} == {"output_too_large"} and len(out.too_large) == len(w)
    assert "'scores'" in out.too_large[0].reason and out.too_large[0].offset == w.last_offset[0]


@pytest.mark.parametrize("form", ["above", "batch"])
def test_alerts_are_never_thinned(scorer, form):
    bursts = np.arange(200) % 50 < 12  # per key: 6 anomalous windows, then 19 normal ones
    s = scored(scorer, windows_of(scorer, n=200, keys=2, hot=bursts))

    def events(o: OutputSettings) -> list[dict]:
        return [
            e for _, e in AlertPolicy(k=2, n=3, quiet_windows=2).update(build(scorer, s, o, "scores").policy)
        ]

    every = events(OutputSettings())
    assert {e["event"] for e in every} == {"open", "close"}
    assert events(OutputSettings(scores=form)) == every
