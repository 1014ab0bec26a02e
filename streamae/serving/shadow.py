"""Shadow scoring: a candidate bundle scores every window beside the current model and
publishes its scores to the shadow topic (never alerts), so an operator sees what a promotion
would change before it happens (``STREAMAE_MODEL__SHADOW_BUNDLE``).

Its outputs travel with the current model's: held by the same publisher, acknowledged before
the same commit, skipped alike for windows a replay rebuilds. Agreement is counted per window:
``streamae_shadow_windows_total{current,shadow}`` (flagged or not by each, each against its own
threshold) and ``streamae_shadow_score_correlation`` (Pearson, log scores, last micro-batch).
Both judge raw window scores with no per-key smoothing state, so for a bundle that smooths or
post-processes they compare the models, not the published flags; and both count windows as
scored (a micro-batch dropped by a rebalance before its commit, and scored again by the next
owner, counts twice).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamae.core.config import ConfigError, OutputSettings, Settings
from streamae.core.registry import incompatible
from streamae.core.scoring import ScoreBatch, Scorer
from streamae.core.windows import Windows
from streamae.serving.health import metrics
from streamae.serving.outputs import Scored, build
from streamae.serving.publisher import Publisher
from streamae.serving.transport import Partition


class Shadow:
    """The candidate ``scorer``, publishing to ``settings.kafka.shadow_topic``."""

    def __init__(self, scorer: Scorer, settings: Settings) -> None:
        self.scorer = scorer
        self.topic = settings.kafka.shadow_topic
        self.top_k = settings.model.top_features
        self.output = OutputSettings(scores="all", max_message_bytes=settings.output.max_message_bytes)

    @classmethod
    def load(cls, settings: Settings, current: Scorer) -> Shadow | None:
        """The shadow of ``settings.model.shadow_bundle`` (None when unset); a ConfigError when
        it cannot score the current model's windows."""
        path = settings.model.shadow_bundle
        if path is None:
            return None
        scorer = Scorer.load(path, settings)
        why = incompatible(scorer.manifest, current.manifest)
        if why is None and scorer.adaptive:
            why = "it normalises each key as it streams (adapt), which needs state of its own"
        if why:
            raise ConfigError(f"invalid configuration:\n  STREAMAE_MODEL__SHADOW_BUNDLE: {path}: {why}")
        return cls(scorer, settings)

    def publish(
        self,
        current: Scorer,
        scored: list[tuple[Windows, ScoreBatch | None]],
        publisher: Publisher,
        scored_through: Callable[[Partition], int],
    ) -> None:
        """Score the micro-batch's fresh windows (those past each partition's
        ``scored_through``) and hold their shadow score records in ``publisher``."""
        mine, theirs = [], []
        for windows, batch in scored:
            p = Partition(windows.topic, windows.partition)
            keep = windows.last_offset > scored_through(p)
            if not keep.any():
                continue
            fresh = windows.select(keep)
            # the current model's raw scores are already computed: no second inference
            given = ScoreBatch(batch.scores[keep], batch.feature_errors[keep]) if batch is not None else None
            own, final = self.scorer.stream(fresh)
            out = build(
                self.scorer, Scored.of(self.scorer, fresh, own, final, self.top_k), self.output, self.topic
            )
            publisher.add_scores(p, out.records, self.topic)
            theirs.append(final / self.scorer.threshold)
            mine.append(current.stream(fresh, None, given)[1] / current.threshold)
        if mine:
            _agreement(np.concatenate(mine), np.concatenate(theirs))


def _agreement(current: np.ndarray, shadow: np.ndarray) -> None:
    """Count flag agreement; the correlation of the log scores (relative to each threshold)."""
    for c in (False, True):
        for s in (False, True):
            n = int(np.sum(((current > 1) == c) & ((shadow > 1) == s)))
            if n:
                metrics.SHADOW_WINDOWS.labels(current=str(c).lower(), shadow=str(s).lower()).inc(n)
    if len(current) > 2:
        a, b = np.log(np.maximum(current, 1e-12)), np.log(np.maximum(shadow, 1e-12))
        if a.std() > 0 and b.std() > 0:
            metrics.SHADOW_CORRELATION.set(float(np.corrcoef(a, b)[0, 1]))
