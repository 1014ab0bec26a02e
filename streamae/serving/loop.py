"""The serving loop: poll → decode → windows → micro-batch → score → alerts → publish → commit.

Delivery is at-least-once and window-complete. Outputs wait for the next commit (on an
interval or a count of records; ``checkpoint.py``), which publishes them, waits for their
acknowledgements, saves each partition's alert and smoothing state (``state_store.py``),
and only then commits. The committed offset is the oldest reading still held for an
unfinished window, so a restarted (or rebalanced) consumer replays just enough to rebuild
its windows; the commit metadata carries ``scored_through``, the last offset whose outputs
are published. Replayed windows up to it are rebuilt and dropped: neither published again
nor fed to the alert policy, whose state comes back from the state topic instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from streamae.core.config import Settings
from streamae.core.scoring import Scorer
from streamae.serving import metrics
from streamae.serving.checkpoint import Checkpoint, Mark, commit_policy, scored_through
from streamae.serving.decode import ReadingDecoder, Rejected
from streamae.serving.microbatch import MicroBatch, score
from streamae.serving.partition import PartitionState
from streamae.serving.publisher import Published, Publisher
from streamae.serving.rebalance import Rebalance, Resume, names, position
from streamae.serving.state_store import StateStore, check_state_topic
from streamae.serving.transport import CommitRefused, CommitTimeout, Partition, Record, Transport

log = logging.getLogger(__name__)

MAX_POLL_WAIT_S = 0.25  # how long a poll may block: bounds the reaction to stop()


@dataclass
class DaemonStats:
    readings: int = 0
    dead_letters: int = 0
    windows: int = 0  # windows whose scores were published
    replayed_windows: int = 0
    alerts_opened: int = 0
    alerts_closed: int = 0
    commits: int = 0
    batches: int = 0


class Daemon:
    """One consumer-group member. ``run()`` blocks until ``stop()``; then drains and commits."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        transport: Transport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.transport = transport
        k, b = settings.kafka, settings.batch
        self.decoder = ReadingDecoder(scorer.manifest.features)
        self.stats = DaemonStats()
        self.rebalance = Rebalance()
        self.checkpoint = Checkpoint(*commit_policy(settings), clock=clock)
        self.batch = MicroBatch(b.max_windows, b.max_wait_ms / 1000, clock)
        self.publisher = Publisher(transport, k)
        self.state = StateStore(transport, k.state_topic)
        self._parts: dict[Partition, PartitionState] = {}
        self._resumes: dict[Partition, Resume] = {}  # positioned, no records yet
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the loop to finish: it drains in-flight work, commits and returns."""
        self._stop.set()

    def assigned(self) -> frozenset[Partition]:
        """The partitions this member holds: safe to call from any thread."""
        return self.rebalance.held()

    def run(self) -> DaemonStats:
        k = self.settings.kafka
        try:
            check_state_topic(self.transport, k)
            self.transport.subscribe([k.input_topic], self.rebalance.on_assign, self.rebalance.on_revoke)
            while not self._stop.is_set():
                polled = self.transport.poll(self._poll_timeout(), k.max_poll_records)
                # records fetched before a seek to the resume point come again after it
                sought = self._apply_rebalance()
                for partition, records in polled.items():
                    if partition not in sought:
                        self._ingest(partition, records)
                if self.batch.ready():
                    self._score()
                if not len(self.batch) and self.checkpoint.due():
                    self._commit()
            self._drop(self.rebalance.take_revoked())
            self._score()
            self._commit()
        finally:
            self.transport.close()
        log.info("stopped: %s", self.stats)
        return self.stats

    def _poll_timeout(self) -> float:
        # a due commit waits for the pending micro-batch, so that is the next deadline
        wait = self.batch.seconds_until_ready() if len(self.batch) else self.checkpoint.seconds_until_due()
        return max(0.001, min(MAX_POLL_WAIT_S, MAX_POLL_WAIT_S if wait is None else wait))

    # -- rebalances -----------------------------------------------------------------

    def _apply_rebalance(self) -> set[Partition]:
        """Drop revoked partitions, position assigned ones; returns those sought."""
        revoked = self.rebalance.take_revoked()
        assigned = self.rebalance.take_assigned()
        # one assigned while still held comes back without a revocation: start it over
        self._drop(revoked | (assigned & self._parts.keys()))
        if not assigned:
            return set()
        resumes = position(self.transport, assigned, self.checkpoint)
        self._resumes.update(resumes)
        return {p for p, r in resumes.items() if r.offset is not None}

    def _drop(self, partitions: Collection[Partition]) -> None:
        """Forget partitions: their state, unscored windows and unpublished outputs."""
        if not partitions:
            return
        for p in partitions:
            self._parts.pop(p, None)
            self._resumes.pop(p, None)
        self.checkpoint.drop(partitions)
        windows, outputs = self.batch.drop(partitions), self.publisher.drop(partitions)
        if windows or outputs:
            log.info(
                "revoked %s: %d unscored windows and %d unpublished outputs left to the next owner",
                names(partitions),
                windows,
                outputs,
            )

    def _resume(self, partition: Partition, first_offset: int) -> PartitionState:
        """Fresh state for a partition's first records since its assignment."""
        resume = self._resumes.pop(partition, Resume(None, None))
        if resume.offset is not None and first_offset > resume.offset:
            # the resume point is gone (retention) or was a control record
            log.warning("%s: offset %d unavailable, resuming at %d", partition, resume.offset, first_offset)
        through = scored_through(resume.committed, partition)
        self.checkpoint.start(partition, first_offset, through)
        st = self._parts[partition] = PartitionState.fresh(partition, self.scorer, self.settings)
        saved = self.state.load(partition, through) if resume.committed else None
        restored = saved is not None and st.restore(saved)
        log.info(
            "%s: resuming at offset %d; outputs published through %d; alert state %s",
            partition,
            first_offset,
            through,
            "restored" if restored else "fresh",
        )
        return st

    # -- the data path --------------------------------------------------------------

    def _ingest(self, partition: Partition, records: Sequence[Record]) -> None:
        st = self._parts.get(partition) or self._resume(partition, records[0].offset)
        readings, rejected = self.decoder.decode(records, partition.topic, partition.partition)
        self.batch.add(st.store.push(readings))
        self._dead_letters(partition, rejected + st.discarded())
        self.checkpoint.processed(partition, records[0].offset, records[-1].offset, len(records))
        self.stats.readings += len(readings)
        metrics.READINGS.inc(len(readings))

    def _dead_letters(self, partition: Partition, rejected: list[Rejected]) -> None:
        through = self.checkpoint.scored_through(partition)
        for r in rejected:
            if r.offset > through:  # else dead-lettered before a restart
                self.publisher.add_dead_letter(r)

    def _score(self) -> None:
        """Score the micro-batch; its outputs wait in the publisher for the next commit."""
        pending = self.batch.take()
        if not pending:
            return
        started = time.perf_counter()
        top_k = self.settings.model.top_features
        for windows, batch in score(self.scorer, pending):
            p = Partition(windows.topic, windows.partition)
            out = self._parts[p].outputs(
                self.scorer, windows, batch, self.checkpoint.scored_through(p), top_k
            )
            self.publisher.add_scores(p, out.scores)
            self.publisher.add_alerts(p, out.alerts)
            self.stats.replayed_windows += out.replayed
            metrics.REPLAYED.inc(out.replayed)
        self.stats.batches += 1
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)

    def _commit(self) -> None:
        """Publish → acknowledgements → state → commit; each step only after the last one."""
        started = time.perf_counter()
        plan = self.checkpoint.plan({p: st.oldest_offset() for p, st in self._parts.items()})
        for p, st in self._parts.items():  # readings of keys forgotten just now
            self._dead_letters(p, st.discarded())
        self._count(self.publisher.publish())
        self.publisher.wait_for_acks()  # DeliveryError: nothing more is committed
        self.checkpoint.published(plan)
        for p, mark in plan.items():
            self.state.save(self.publisher, p, self._parts[p].snapshot(mark.scored_through))
        self.publisher.wait_for_acks()
        if plan:
            self._commit_offsets(plan)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.KEYS.set(sum(len(st.store) for st in self._parts.values()))

    def _commit_offsets(self, plan: dict[Partition, Mark]) -> None:
        try:
            self.transport.commit({p: mark.to_offset() for p, mark in plan.items()})
        except CommitRefused as exc:
            # a rebalance took the partitions meanwhile: their new owner resumes from the
            # previous commit and may publish these outputs again (at-least-once)
            log.warning("commit refused during a rebalance: %s", exc)
            self.rebalance.drop_later(plan)
            return
        except CommitTimeout as exc:
            # outputs and state are out; the next commit carries these offsets too
            log.warning("commit not answered, retrying with the next: %s", exc)
            return
        self.checkpoint.committed(plan)
        self.stats.commits += 1
        metrics.COMMITS.inc()

    def _count(self, sent: Published) -> None:
        s = self.stats
        s.windows += sent.scores
        s.alerts_opened += sent.alerts_opened
        s.alerts_closed += sent.alerts_closed
        s.dead_letters += sent.dead_letters
