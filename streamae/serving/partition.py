"""What the loop holds for one assigned partition: windows per key, alert policy, and the
stream's per-key state (``core/stream_state.py``: smoothing, post-processing, normalisation).

Built fresh when a partition's first records arrive after an assignment, restored from
the state store (alerts, smoothing, post-processing; windows are rebuilt by the replay), and
dropped when the partition is revoked.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from streamae.core.alerts import AlertPolicy
from streamae.core.config import OutputSettings, Settings
from streamae.core.encoding import Encoding
from streamae.core.scoring import ScoreBatch, Scorer
from streamae.core.stream_state import StreamState
from streamae.core.windows import Windows, WindowStore
from streamae.serving.commit.state_store import SavedState
from streamae.serving.dead_letters import Rejected
from streamae.serving.outputs import Scored, build
from streamae.serving.transport import Partition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    """What one partition's scored windows publish (see ``outputs.ScoreRecords``)."""

    scores: list[tuple[bytes, bytes, int, int]]  # (key, value, offset, windows carried)
    alerts: list[tuple[dict[str, Any], int]]  # (event, offset of the window that raised it)
    too_large: list[Rejected]  # outputs too large to publish, as dead letters
    replayed: int  # windows rebuilt by a replay: published before, so left out


@dataclass(frozen=True)
class OutputPlan:
    """What every partition's outputs of one micro-batch are built with: the scorer serving
    it (the reloader may swap it between micro-batches) and the output settings."""

    scorer: Scorer
    top_k: int  # features named per score
    output: OutputSettings
    topic: str  # of the score records

    @classmethod
    def of(cls, scorer: Scorer, settings: Settings) -> OutputPlan:
        return cls(scorer, settings.model.top_features, settings.output, settings.kafka.scores_topic)


@dataclass
class PartitionState:
    partition: Partition
    encoding: Encoding  # the bundle's inputs: a discarded reading's values by name
    store: WindowStore
    policy: AlertPolicy
    stream: StreamState = field(default_factory=StreamState)  # smoothing, post-processing, adapt
    # event times of the windows scored since the last commit: the end-to-end latency is
    # observed once the commit that covers them succeeds
    scored_ts: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def fresh(cls, partition: Partition, scorer: Scorer, settings: Settings) -> PartitionState:
        m, a = scorer.manifest, settings.alerts
        return cls(
            partition,
            scorer.encoding,
            scorer.encoding.store(m.window, m.stride, settings.windows.idle_ttl_s),
            AlertPolicy(a.k, a.n, a.quiet_windows, a.cooldown_s, a.severity_ratios),
        )

    def discarded(self, scored_through: int) -> list[Rejected]:
        """Readings no window will cover (their key fell silent past the idle TTL), as dead
        letters; the value is the reading as decoded (the record itself is long gone).

        A reading cut off by a silence at or before ``scored_through`` was dead-lettered
        before a restart; the reading itself may be older than that: what decides is the
        offset of the silence."""
        out = []
        p = self.partition
        for d in self.store.drain_discarded():
            keep = np.flatnonzero(d.causes > scored_through)
            r = d.readings
            rows = zip(
                r.keys[keep].tolist(),
                r.ts[keep].tolist(),
                r.values[keep].tolist(),
                r.offsets[keep].tolist(),
                r.indices()[keep].tolist(),
                [d.reasons[i] for i in keep.tolist()],
            )
            for key, ts, values, offset, index, reason in rows:
                value = orjson.dumps({"key": key, "ts": ts, "values": self.encoding.values_of(values)})
                at = None if index < 0 else index
                out.append(
                    Rejected(
                        p.topic, p.partition, offset, key.encode(), value, reason, at, "window_abandoned"
                    )
                )
        return out

    def restore(self, saved: SavedState) -> bool:
        """Continue from ``saved``; False (and a fresh policy) when it does not fit this policy."""
        policy = copy.deepcopy(self.policy)  # a failed restore must leave the fresh one intact
        try:
            policy.restore(saved.alerts)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("%s: saved alert state does not restore (%r); starting fresh", self.partition, exc)
            return False
        self.policy = policy
        self.stream.update(saved.smoothing, saved.post)
        return True

    def snapshot(self, scored_through: int) -> SavedState:
        return SavedState(scored_through, self.policy.snapshot(), *self.stream.saved())

    def take_scored_ts(self) -> list[np.ndarray]:
        """The event times of windows scored since the last call (see ``scored_ts``)."""
        taken, self.scored_ts = self.scored_ts, []
        return taken

    def oldest_offset(self) -> int | None:
        """The oldest offset a future window needs, after forgetting idle keys."""
        if evicted := self.store.evict_idle():
            self.stream.forget(evicted)  # their scores' state too: bounded by live keys
            log.info("%s: forgot %d idle key(s)", self.partition, len(evicted))
        return self.store.oldest_offset()

    def outputs(
        self, plan: OutputPlan, windows: Windows, batch: ScoreBatch | None, scored_through: int
    ) -> Outputs:
        """Score records (in the form ``plan`` says) and alert events of scored ``windows``;
        windows ending at or before ``scored_through`` were published before a restart and
        their effect is in the restored state, so they are neither published nor fed to the
        alert policy. ``batch``: the windows' raw scores, None when the partition scores them
        itself (an adaptive bundle)."""
        scorer = plan.scorer
        fresh = windows.last_offset > scored_through
        n_fresh = int(fresh.sum())
        if n_fresh < len(windows):
            windows = windows.select(fresh)
            if batch is not None:
                batch = ScoreBatch(batch.scores[fresh], batch.feature_errors[fresh])
        # smoothing, the bundle's post-processing (and, for an adaptive bundle, the scoring
        # itself: core/adapt.py), with this partition's per-key state
        batch, smoothed = scorer.stream(windows, self.stream, batch)
        self.scored_ts.append(windows.end_ts)
        scored = Scored.of(scorer, windows, batch, smoothed, plan.top_k)
        built = build(scorer, scored, plan.output, plan.topic)
        offsets = windows.last_offset
        events = [(event, int(offsets[i])) for i, event in self.policy.update(built.policy)]
        return Outputs(built.records, events, built.too_large, len(fresh) - n_fresh)
