"""Streaming normalisation in the daemon (core/adapt.py): the same scores as `streamae score`,
window by window, with its per-key state saved at each commit and restored after a restart."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from daemon_harness import WINDOW, serve_across_a_restart

from streamae.core import adapt
from streamae.core.bundle import load_bundle
from streamae.core.config import TrainSettings
from streamae.core.offline import score_frame
from streamae.core.scoring import Scorer


@pytest.fixture(scope="module")
def adaptive_scorer(tmp_path_factory: pytest.TempPathFactory, history) -> Scorer:
    from streamae.training.fit import fit

    out: Path = tmp_path_factory.mktemp("adapt") / "bundle"
    cfg = TrainSettings(window=WINDOW, epochs=1, seed=0, ewma_alpha=0.5, adapt_half_life=20, adapt_block=3)
    fit(history, out, cfg, progress=False)
    return Scorer(load_bundle(out), ["CPUExecutionProvider"])


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
    assert saved and set(saved[-1]["post"][adapt.STATE]) == set(frame["key"])  # via the state topic
