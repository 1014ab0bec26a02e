"""The bundle's streaming post-processing in the daemon: the same scores as `streamae score`,
window by window, with its per-key state saved at each commit and restored after a restart."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from daemon_harness import serve_across_a_restart

from streamae.core.offline import score_frame
from streamae.core.scoring import Scorer


@pytest.fixture(scope="module")
def post_scorer(post_bundle: Path, scorer_of) -> Scorer:
    return scorer_of(post_bundle)


def test_serve_across_a_restart_gives_the_scores_of_streamae_score(post_scorer, make_stream):
    frame = make_stream(24, 2, seed=5, entities=2).frame
    t, served = serve_across_a_restart(post_scorer, frame)
    offline = score_frame(frame, post_scorer, "stream")
    assert len(served) == len(offline)
    assert [served[o]["score"] for o in offline["source_offset_end"]] == offline["score"].tolist()
    assert (offline["score"] == 0).sum() > 100  # the post-processing did act (record-high gating)
    saved = [orjson.loads(r.value) for r in t.records("state")]
    assert saved and saved[-1]["post"]["record"]  # the state went through the state topic
