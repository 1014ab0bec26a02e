"""Streaming normalisation in the daemon (core/adapt.py): the same scores as `streamae score`,
window by window, with its per-key state saved at each commit and restored after a restart."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from daemon_harness import serve_across_a_restart

from streamae.core.offline import score_frame
from streamae.core.scoring import Scorer


@pytest.fixture(scope="module")
def adaptive_scorer(adaptive_bundle: Path, scorer_of) -> Scorer:
    return scorer_of(adaptive_bundle)


@pytest.mark.parametrize("max_windows", [1, 7, 1000])
def test_serve_across_a_restart_gives_the_scores_of_streamae_score(adaptive_scorer, make_stream, max_windows):
    assert adaptive_scorer.adaptive
    frame = make_stream(24, 2, seed=5, entities=2).frame
    t, served = serve_across_a_restart(adaptive_scorer, frame, 3, batch={"max_windows": max_windows})
    offline = score_frame(frame, adaptive_scorer, "stream")
    assert len(served) == len(offline)
    assert [served[o]["score"] for o in offline["source_offset_end"]] == offline["score"].tolist()
    assert [served[o]["raw_score"] for o in offline["source_offset_end"]] == offline["raw_score"].tolist()
    saved = [orjson.loads(r.value) for r in t.records("state")]
    assert saved and set(saved[-1]["post"]["adapt"]) == set(frame["key"])  # via the state topic


def test_inference_metrics_count_the_onnx_calls_an_adaptive_bundle_makes(
    adaptive_scorer, make_stream, monkeypatch
):
    """An adaptive bundle scores inside each partition's outputs, block by block: the
    inference metrics measure those calls, not the placeholder the micro-batch hands on."""
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    calls: list[int] = []
    run = adaptive_scorer._runner.feature_errors

    def slow(chunk, out):  # 10 ms more per ONNX Runtime call
        calls.append(len(chunk))
        time.sleep(0.01)
        return run(chunk, out)

    monkeypatch.setattr(adaptive_scorer._runner, "feature_errors", slow)
    before = sample("streamae_inference_seconds_sum"), sample("streamae_inference_windows_total")
    serve_across_a_restart(adaptive_scorer, make_stream(6, 0, seed=6, entities=2).frame, 2)
    seconds = sample("streamae_inference_seconds_sum") - before[0]
    windows = sample("streamae_inference_windows_total") - before[1]
    assert calls and windows == sum(calls)
    assert seconds >= 0.01 * len(calls)
