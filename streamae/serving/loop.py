"""The serving loop: poll → decode → windows → micro-batch → score → alerts → publish → commit.

Delivery is at-least-once (or exactly-once) and window-complete. Outputs are sent as soon as
their micro-batch is scored (exactly-once: in the commit's transaction). A commit (on an interval,
a count of records, or ``STREAMAE_OUTPUT__MAX_HELD`` unacknowledged) waits for every
acknowledgement, saves each partition's alert state, then commits (``committer.py``) the
oldest reading still held for an unfinished window: a restarted (or rebalanced) consumer
replays just enough to rebuild its windows, and the commit metadata's ``scored_through``
keeps it from publishing anything twice.

Nothing but configuration stops it: a step that fails for a reason that may pass (broker away,
no acknowledgement, commit not answered) is retried with backoff, consumption paused, polls alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence

import numpy as np

from streamae.core.config import Settings
from streamae.core.scoring import Scorer
from streamae.serving.backoff import Backoff
from streamae.serving.commit.checkpoint import Checkpoint, commit_policy, scored_through
from streamae.serving.commit.committer import REWIND, WAITING, Committer
from streamae.serving.commit.rebalance import Positioner, names
from streamae.serving.commit.state_store import StateStore, check_state_topic
from streamae.serving.decode import ReadingDecoder
from streamae.serving.health import metrics
from streamae.serving.health.progress import DaemonStats as DaemonStats  # re-exported (demo)
from streamae.serving.health.progress import HealthSnapshot
from streamae.serving.microbatch import MicroBatch, caught_up, score
from streamae.serving.partition import OutputPlan, PartitionState
from streamae.serving.publisher import Published, Publisher
from streamae.serving.reload import ModelReloader
from streamae.serving.shadow import Shadow
from streamae.serving.transport import Partition, Record, Transport

log = logging.getLogger(__name__)

MAX_POLL_WAIT_S = 0.25  # how long a poll may block: bounds the reaction to stop()
LAG_EVERY_S = 1.0  # how often the loop refreshes the lag it reports
PARK_ACK_S = 5.0  # how long a rebalance waits for acknowledgements before it replays instead


class Daemon:
    """One consumer-group member. ``run()`` blocks until ``stop()``; then drains and commits."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        transport: Transport,
        clock: Callable[[], float] = time.monotonic,
        reloader: ModelReloader | None = None,
        shadow: Shadow | None = None,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.transport = transport
        self.reloader, self.shadow = reloader, shadow
        self.clock = clock
        k, b = settings.kafka, settings.batch
        self.decoder = ReadingDecoder(scorer.encoding.inputs, categories=scorer.encoding.categories)
        self.stats = DaemonStats()
        # event times of the scored windows of the commit under way (`PartitionState.scored_ts`)
        self._committing: list[np.ndarray] = []
        self.checkpoint = Checkpoint(*commit_policy(settings), clock=clock)
        self.batch = MicroBatch(b.max_windows, b.max_wait_ms / 1000, clock)
        self.publisher = Publisher(transport, k, settings.output)
        self.state = StateStore(transport, k.state_topic)
        backoff_s = (k.retry_backoff_ms / 1000, k.retry_backoff_max_ms / 1000)
        self.positioner = Positioner(transport, self.checkpoint, self.state, Backoff(*backoff_s, clock))
        self.rebalance = self.positioner.rebalance
        self.committer = Committer(
            transport,
            self.publisher,
            self.state,
            self.checkpoint,
            self.rebalance,
            Backoff(*backoff_s, clock),
            self._count,
            clock,
        )
        self._parts: dict[Partition, PartitionState] = {}
        self._parked: dict[Partition, PartitionState] = {}  # revoked, all acknowledged (_release)
        self._stop = threading.Event()
        self._paused: set[Partition] = set()
        self._polled_at: float | None = None
        self._progress_at: float | None = None
        self._lag: dict[Partition, int] = {}
        self._lag_at = float("-inf")

    def stop(self) -> None:
        """Ask the loop to finish: it drains in-flight work, commits and returns."""
        self._stop.set()

    def assigned(self) -> frozenset[Partition]:
        """The partitions this member holds: safe to call from any thread."""
        return self.rebalance.held()

    def health(self) -> HealthSnapshot:
        """The loop's state for health checks (``progress.py``): safe to call from any thread."""
        c, r = self.committer, self.reloader
        return HealthSnapshot(
            polled_at=self._polled_at,
            last_progress=max(self._progress_at or 0.0, c.committed_at or 0.0) or None,
            committed_at=c.committed_at,
            assigned=len(self.rebalance.held()),
            in_backoff=c.backoff.active or self.positioner.backoff.active,
            paused=bool(self._paused),
            model_version=self.scorer.manifest.model_version,
            lag=dict(self._lag),
            held_outputs=len(self.publisher) + self.publisher.in_flight(),
            reloads=r.reloads if r else 0,
            reload_failures=r.failures if r else 0,
        )

    def run(self) -> DaemonStats:
        k = self.settings.kafka
        try:
            check_state_topic(self.transport, k)
            self.transport.subscribe([k.input_topic], self.rebalance.on_assign, self.rebalance.on_revoke)
            while not self._stop.is_set():
                self._tick()
            self._drain()
        finally:
            self.committer.abort()  # a transaction still open at the end (exactly-once)
            self.transport.close()
        log.info("stopped: %s", self.stats)
        return self.stats

    def _tick(self) -> None:
        polled = self.transport.poll(self._poll_timeout(), self.settings.kafka.max_poll_records)
        self._polled_at = now = self.clock()
        skip = self._apply_rebalance(polled)  # records fetched before a seek come again after it
        for partition, records in polled.items():
            if partition not in skip:
                self._ingest(partition, records)
        if self.reloader is not None and (new := self.reloader.poll()) is not None:
            self.scorer = new  # between micro-batches: the next one scores with it
        if self.batch.ready() or (len(self.batch) and caught_up(polled, self.transport.highwater)):
            self._score()
        if len(self.publisher) and not self.transport.transactional:
            self.publisher.publish()  # at-least-once: at once; a commit waits for their acks
        held = len(self.publisher) + self.publisher.in_flight()
        due = self.checkpoint.due() or held >= self.settings.output.max_held
        if not len(self.batch) and (self.committer.busy or due):
            self._commit()
        self._pause_while_stuck()
        if now - self._lag_at >= LAG_EVERY_S:
            self._lag, self._lag_at = self.transport.lag(), now

    def _poll_timeout(self) -> float:
        # a due commit waits for the pending micro-batch, so that is the next deadline
        if len(self.batch):
            wait = self.batch.seconds_until_ready()
        elif self.committer.busy:
            wait = self.committer.backoff.remaining()
        else:
            wait = self.checkpoint.seconds_until_due()
        if self.positioner.pending():
            wait = min(wait if wait is not None else MAX_POLL_WAIT_S, self.positioner.backoff.remaining())
        return max(0.001, min(MAX_POLL_WAIT_S, MAX_POLL_WAIT_S if wait is None else wait))

    def _pause_while_stuck(self) -> None:
        """Pause every held partition while a commit waits out a backoff (outputs stay
        bounded: nothing new is read), and those whose position is not known yet."""
        held = self.rebalance.held()
        want = set(held) if self.committer.busy else set()
        want |= self.positioner.unpositioned() & held
        if want - self._paused:
            self.transport.pause(want - self._paused)
        if self._paused - want:
            self.transport.resume((self._paused - want) & held)
        if bool(want) != bool(self._paused):
            log.info("consumption %s", "paused" if want else "resumed")
        self._paused = want

    # -- rebalances -----------------------------------------------------------------

    def _apply_rebalance(self, polled: dict[Partition, list[Record]]) -> set[Partition]:
        """Drop revoked partitions, position assigned ones; returns those whose records in
        ``polled`` are not to be used (sought, or not positioned yet)."""
        revoked, assigned = self.rebalance.take_revoked(), self.rebalance.take_assigned()
        # one assigned while still held comes back without a revocation: released too
        self._release(revoked | (assigned & self._parts.keys()))
        if assigned:  # parked ones not given back are someone else's now
            for p in self.checkpoint.forget_parked(keep=assigned):
                self._parked.pop(p, None)
        # a client may keep the paused flag of a partition it gives back (kafka-python 3): an
        # assigned one counts as paused until resumed, or one paused for a commit and given
        # back stays paused for ever (the stall of a member joining mid-commit)
        self._paused = (self._paused - revoked) | assigned
        skip = self.positioner.position(assigned, polled)
        for p, offset in self.positioner.take_kept().items():  # parked, back unchanged
            log.info("%s: back unchanged, going on at offset %d", p, offset)
            self.checkpoint.go_on(p)
            self._parts[p] = self._parked.pop(p)
        return skip

    def _release(self, partitions: Collection[Partition]) -> None:
        """Revoked partitions whose outputs are all acknowledged (at-least-once, pending windows
        scored first) are parked: one that comes straight back goes on; the rest are dropped."""
        parked: set[Partition] = set()
        if partitions and not self.transport.transactional:
            self._score()
            self.publisher.publish()
            self._count(self.publisher.settle(PARK_ACK_S).acked)
            parked = (set(partitions) & self._parts.keys()) - self.publisher.unsettled()
            self.checkpoint.park(parked)  # before _drop forgets their entries
            self._parked.update({p: self._parts[p] for p in parked})
        self._drop(partitions)

    def _drop(self, partitions: Collection[Partition]) -> None:
        """Forget partitions: their state, unscored windows and unpublished outputs."""
        if not partitions:
            return
        for p in partitions:
            self._parts.pop(p, None)
        self.positioner.forget(partitions)
        self.committer.drop(partitions)
        self.checkpoint.drop(partitions)
        windows, outputs = self.batch.drop(partitions), self.publisher.drop(partitions)
        if windows or outputs:
            msg = "revoked %s: %d unscored windows and %d unpublished outputs left to the next owner"
            log.info(msg, names(partitions), windows, outputs)

    def _rewind(self) -> None:
        """Exactly-once: the transaction was aborted; resume every partition from its commit."""
        held = set(self.rebalance.held())
        log.warning("rewinding %s to their last commit", names(held))
        self.stats.rewinds += 1
        self._drop(held | self._parts.keys())
        self.rebalance.reposition(held)

    def _resume(self, partition: Partition, first_offset: int) -> PartitionState:
        """Fresh state for a partition's first records since its assignment."""
        resume = self.positioner.take(partition)
        if resume.offset is not None and first_offset > resume.offset:
            # the resume point is gone (retention) or was a control record
            log.warning("%s: offset %d unavailable, resuming at %d", partition, resume.offset, first_offset)
        through = scored_through(resume.committed, partition)
        self.checkpoint.start(partition, first_offset, through)
        st = self._parts[partition] = PartitionState.fresh(partition, self.scorer, self.settings)
        restored = resume.saved is not None and st.restore(resume.saved)
        msg = "%s: resuming at offset %d; outputs published through %d; alert state %s"
        log.info(msg, partition, first_offset, through, "restored" if restored else "fresh")
        return st

    # -- the data path --------------------------------------------------------------

    def _ingest(self, partition: Partition, records: Sequence[Record]) -> None:
        st = self._parts.get(partition) or self._resume(partition, records[0].offset)
        readings, rejected = self.decoder.decode(records, partition.topic, partition.partition)
        self.batch.add(st.store.push(readings))
        through = self.checkpoint.scored_through(partition)
        self.publisher.add_dead_letters(rejected, through)  # all but those sent before a restart
        self.publisher.add_dead_letters(st.discarded(through))  # readings no window will cover
        self.checkpoint.processed(partition, records[0].offset, records[-1].offset, len(records))
        self.stats.readings += len(readings)
        self._progress_at = self.clock()
        metrics.READINGS.inc(len(readings))

    def _score(self) -> None:
        """Score the micro-batch; its outputs go to the publisher."""
        pending = self.batch.take()
        if not pending:
            return
        started = time.perf_counter()
        plan = OutputPlan.of(self.scorer, self.settings)
        inference = self.scorer.inference_s, self.scorer.inference_windows
        scored = score(self.scorer, pending)
        for windows, batch in scored:
            p = Partition(windows.topic, windows.partition)
            out = self._parts[p].outputs(plan, windows, batch, self.checkpoint.scored_through(p))
            self.publisher.add_scores(p, out.scores)
            self.publisher.add_alerts(p, out.alerts)
            self.publisher.add_dead_letters(out.too_large)
            self.stats.replayed_windows += out.replayed
            metrics.REPLAYED.inc(out.replayed)
        if self.shadow is not None:  # the candidate's scores, to the shadow topic
            self.shadow.publish(self.scorer, scored, self.publisher, self.checkpoint.scored_through)
        # ONNX Runtime's share of the micro-batch, wherever it ran (partitions: adaptive bundles)
        metrics.inference(
            self.scorer.inference_s - inference[0], self.scorer.inference_windows - inference[1]
        )
        self.stats.batches += 1
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)

    def _commit(self) -> None:
        """Start a commit (publish → acknowledgements → state → offsets), or carry on the
        one under way; a step that has to wait leaves it for a later call."""
        started, commits = time.perf_counter(), self.committer.commits
        if self.committer.busy:
            outcome = self.committer.step()
        else:
            plan = self.checkpoint.plan({p: st.oldest_offset() for p, st in self._parts.items()})
            for p, st in self._parts.items():  # readings of keys forgotten just now
                self.publisher.add_dead_letters(st.discarded(self.checkpoint.scored_through(p)))
            # alert state as of the plan: records read while the commit waits change it later
            snapshots = {p: self._parts[p].snapshot(mark.scored_through) for p, mark in plan.items()}
            self._committing = [ts for p in plan for ts in self._parts[p].take_scored_ts()]
            outcome = self.committer.start(plan, snapshots)
        if outcome == REWIND:
            self._committing = []  # redone after the rewind, and observed then
            self._rewind()
        elif outcome != WAITING:
            if self._committing:
                metrics.end_to_end(np.concatenate(self._committing))
                self._committing = []
            self.stats.commits = self.committer.commits
            metrics.COMMITS.inc(self.committer.commits - commits)
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.KEYS.set(sum(len(st.store) for st in self._parts.values()))

    def _drain(self) -> None:
        """After stop(): score what is pending and commit it, waiting out failures for at
        most twice the request timeout (then the next owner replays it: at-least-once)."""
        self._drop(self.rebalance.take_revoked())
        self._score()
        deadline = self.clock() + 2 * self.settings.kafka.request_timeout_ms / 1000
        self._commit()
        while self.committer.busy and self.clock() < deadline:
            # polls keep the membership (partitions are paused meanwhile; records that come
            # anyway are left uncommitted) and say which partitions the group took back
            self.transport.poll(self._poll_timeout(), self.settings.kafka.max_poll_records)
            self._drop(self.rebalance.take_revoked())
            self._commit()
        if self.committer.busy:
            log.warning("stopping with outputs not committed: the next owner replays them")

    def _count(self, sent: Published) -> None:
        if self.stats.add(sent):
            self._progress_at = self.clock()
