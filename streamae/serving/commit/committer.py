"""The commit: held outputs → acknowledged → alert state saved → offsets committed.

One commit at a time, from its plan (``checkpoint.plan``) to its committed offsets. A step
that cannot finish (outputs not acknowledged, the coordinator not answering) leaves the
commit where it is and starts a backoff; the loop keeps polling with consumption paused
and calls :meth:`Committer.step` again when the wait is over. So a broker that is away
for minutes is waited out, and nothing is committed before what it covers is published.

At-least-once (the default), in order: publish what is still held (the loop sends outputs as
they are scored) and wait for every acknowledgement (outputs that failed transiently are sent
again, nothing more); save each partition's alert state and wait for it; commit the offsets.

Exactly-once (``STREAMAE_KAFKA__DELIVERY=exactly_once``): one transaction holds the
outputs, the alert state and the offsets. Any failed send aborts it, and the loop rewinds
to the last commit (:data:`REWIND`) and does the work again; a commit whose outcome is
unknown (timeout) is committed again after the backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Literal

from streamae.serving.backoff import Backoff
from streamae.serving.commit.checkpoint import Checkpoint, Mark
from streamae.serving.commit.rebalance import Rebalance
from streamae.serving.commit.state_store import SavedState, StateStore
from streamae.serving.publisher import Published, Publisher
from streamae.serving.transport import (
    CommitRefused,
    Partition,
    TransactionFailed,
    Transport,
    TransportTimeout,
)

log = logging.getLogger(__name__)

Outcome = Literal["committed", "waiting", "rewind"]
COMMITTED: Outcome = "committed"  # done (or refused by a rebalance: the partitions are dropped)
WAITING: Outcome = "waiting"  # in backoff: call step() again when it is over
REWIND: Outcome = "rewind"  # exactly-once: aborted; drop every partition and resume from the commit


class Committer:
    """Carries one commit at a time through its steps, across loop iterations."""

    def __init__(
        self,
        transport: Transport,
        publisher: Publisher,
        state: StateStore,
        checkpoint: Checkpoint,
        rebalance: Rebalance,
        backoff: Backoff,
        on_published: Callable[[Published], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport, self.publisher, self.state = transport, publisher, state
        self.checkpoint, self.rebalance, self.backoff = checkpoint, rebalance, backoff
        self.on_published = on_published
        self.clock = clock
        self.committed_at: float | None = None
        self.commits = 0
        self._plan: dict[Partition, Mark] | None = None
        self._snapshots: dict[Partition, SavedState] = {}
        self._stage = ""
        self._acked = Published()  # exactly-once: counted when the transaction commits

    @property
    def busy(self) -> bool:
        """Whether a commit is under way (waiting out a backoff, between loop iterations)."""
        return bool(self._stage)

    def start(self, plan: dict[Partition, Mark], snapshots: dict[Partition, SavedState]) -> Outcome:
        """Begin a commit of ``plan`` (every processed record's outputs held), with each
        partition's alert state as of it, and carry it as far as it goes now."""
        self._plan, self._snapshots = plan, snapshots
        if self.transport.transactional:
            self.transport.begin_transaction()
            self.publisher.publish()
            self._save_state()
            self._stage = "transaction"
        else:
            self.publisher.publish()
            self._stage = "outputs"
        return self.step()

    def step(self) -> Outcome:
        """Carry the commit on from where it waits; :data:`WAITING` while in backoff."""
        if not self._stage:
            return COMMITTED
        if self.backoff.waiting():
            return WAITING
        if self.transport.transactional:
            return self._step_transaction()
        if self._stage == "outputs":
            if not self._settled():
                return WAITING
            assert self._plan is not None
            self.checkpoint.published(self._plan)
            self._save_state()
            self._stage = "state"
        if self._stage == "state":
            if not self._settled():
                return WAITING
            self._stage = "offsets"
        return self._commit_offsets()

    def drop(self, partitions: Collection[Partition]) -> None:
        """Revoked partitions leave the commit under way (their outputs go with them); in a
        transaction, that transaction is aborted: it holds offsets no longer ours."""
        if self._plan is None or not set(partitions) & self._plan.keys():
            return
        if self.transport.transactional:
            self._stage = "abort"
        for p in partitions:
            self._plan.pop(p, None)
            self._snapshots.pop(p, None)

    def _save_state(self) -> None:
        for p, snapshot in self._snapshots.items():
            self.state.save(self.publisher, p, snapshot)

    def _settled(self) -> bool:
        """Whether every send is acknowledged; else back off (failed ones go again next time)."""
        self.publisher.retry()
        result = self.publisher.settle()
        self.on_published(result.acked)
        if result.complete:
            return True
        delay = self.backoff.fail()
        log.warning(
            "outputs not acknowledged (%d in flight, %d failed; %s); consumption paused, "
            "trying again in %.1f s",
            result.pending,
            result.failed,
            result.error or "no answer in time",
            delay,
        )
        return False

    def _commit_offsets(self) -> Outcome:
        plan = self._plan or {}
        if plan:
            try:
                self.transport.commit({p: mark.to_offset() for p, mark in plan.items()})
            except CommitRefused as exc:
                # a rebalance took the partitions meanwhile: their owner (maybe this member
                # again) resumes from the previous commit and may publish these outputs again
                log.warning("commit refused during a rebalance: %s", exc)
                self.rebalance.restart_later(plan)
                return self._done()
            except TransportTimeout as exc:
                log.warning("commit not answered, trying again in %.1f s: %s", self.backoff.fail(), exc)
                return WAITING
            self.checkpoint.committed(plan)
        return self._done(committed=bool(plan))

    def _step_transaction(self) -> Outcome:
        if self._stage == "transaction":
            result = self.publisher.settle()
            self._acked = _add(self._acked, result.acked)
            if result.failed or result.rejected:
                log.warning("outputs refused in a transaction (%s): aborting it", result.error)
                self._stage = "abort"
            elif result.pending:
                log.warning("outputs not acknowledged yet; trying again in %.1f s", self.backoff.fail())
                return WAITING
            else:
                self._stage = "commit"
        if self._stage == "commit":
            plan = self._plan or {}
            try:
                self.transport.commit_transaction({p: mark.to_offset() for p, mark in plan.items()})
            except TransportTimeout as exc:
                log.warning("transaction commit not answered, again in %.1f s: %s", self.backoff.fail(), exc)
                return WAITING
            except (TransactionFailed, CommitRefused) as exc:
                log.warning("transaction not committed (%s): aborting it", exc)
                self._stage = "abort"
            else:
                self.checkpoint.published(plan)
                self.checkpoint.committed(plan)
                self.on_published(self._acked)
                return self._done(committed=bool(plan))
        return self._abort()

    def _abort(self) -> Outcome:
        try:
            self.transport.abort_transaction()
        except TransportTimeout as exc:
            log.warning("transaction not aborted, again in %.1f s: %s", self.backoff.fail(), exc)
            return WAITING
        self.publisher.forget_in_flight()
        self._done()
        return REWIND

    def abort(self) -> None:
        """Give up the commit under way (shutting down): a transaction is aborted, if it can be."""
        if self._stage and self.transport.transactional:
            try:
                self.transport.abort_transaction()
            except Exception as exc:  # the broker times it out anyway
                log.warning("open transaction not aborted: %r", exc)
        self._done()

    def _done(self, committed: bool = False) -> Outcome:
        self._plan, self._snapshots, self._stage, self._acked = None, {}, "", Published()
        self.backoff.succeed()
        if committed:
            self.committed_at = self.clock()
            self.commits += 1
        return COMMITTED


def _add(a: Published, b: Published) -> Published:
    return Published(
        a.scores + b.scores,
        a.alerts_opened + b.alerts_opened,
        a.alerts_closed + b.alerts_closed,
        a.dead_letters + b.dead_letters,
    )
