"""Rebalances: partitions the group gives and takes, applied by the loop between polls.

kafka-python 3 runs rebalance callbacks on its IO thread, where blocking calls (commit,
committed offsets) are refused, while the loop waits inside ``poll()`` or ``close()``. So
the callbacks only record the change (:class:`Rebalance`); after ``poll()`` returns, the
loop drops the revoked partitions' unpublished work (the next owner replays it from the
last commit; ``scored_through`` keeps it from publishing anything twice) and positions
the assigned ones (:func:`position`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from streamae.serving.backoff import Backoff
from streamae.serving.commit.checkpoint import Checkpoint, scored_through
from streamae.serving.commit.state_store import SavedState, StateStore
from streamae.serving.transport import Offset, Partition, Record, Transport, TransportError

log = logging.getLogger(__name__)


def names(partitions: Collection[Partition]) -> list[str]:
    return [str(p) for p in sorted(partitions)]


class Rebalance:
    """Assignment changes reported by the transport's callbacks (from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assigned: set[Partition] = set()  # to position
        self._revoked: set[Partition] = set()  # to drop
        self._held: frozenset[Partition] = frozenset()

    def on_assign(self, partitions: Collection[Partition]) -> None:
        log.info("assigned %s", names(partitions))
        with self._lock:
            self._assigned.update(partitions)
            self._held = self._held | frozenset(partitions)

    def on_revoke(self, partitions: Collection[Partition]) -> None:
        with self._lock:
            self._held = self._held - frozenset(partitions)
        self.drop_later(partitions)

    def reposition(self, partitions: Collection[Partition]) -> None:
        """Have the loop position ``partitions`` again after the next poll, as if just
        assigned (an aborted transaction rewinds them to their commit)."""
        with self._lock:
            self._assigned.update(partitions)

    def restart_later(self, partitions: Collection[Partition]) -> None:
        """Have the loop drop ``partitions`` after the next poll and, those still held,
        position them again (a refused commit: the group may have given them straight back,
        and the work since the last commit must be read again, not skipped)."""
        with self._lock:
            self._revoked.update(partitions)
            self._assigned.update(set(partitions) & self._held)

    def drop_later(self, partitions: Collection[Partition]) -> None:
        """Have the loop drop ``partitions`` after the next poll (e.g. a refused commit)."""
        with self._lock:
            self._revoked.update(partitions)
            self._assigned.difference_update(partitions)

    def held(self) -> frozenset[Partition]:
        """The partitions this member holds, as the callbacks last said: safe from any thread."""
        with self._lock:
            return self._held

    def take_revoked(self) -> set[Partition]:
        with self._lock:
            revoked, self._revoked = self._revoked, set()
        return revoked

    def take_assigned(self) -> set[Partition]:
        with self._lock:
            assigned, self._assigned = self._assigned, set()
        return assigned


@dataclass(frozen=True)
class Resume:
    """Where an assigned partition resumes, the commit it resumes from (if any), and the
    alert state saved with that commit (if any)."""

    offset: int | None  # None: wherever the client's reset policy puts it
    committed: Offset | None
    saved: SavedState | None = None
    kept: bool = False  # parked and back unchanged: the member goes on with the state it kept


def position(
    transport: Transport,
    assigned: Collection[Partition],
    checkpoint: Checkpoint,
    unused: dict[Partition, int] | None = None,
) -> dict[Partition, Resume]:
    """Seek newly assigned partitions to where their unfinished work begins.

    That is where a parked partition stopped, when it comes straight back with the commit
    this member left (``Checkpoint.unpark``); else the committed offset or, for a partition
    never committed that this member held before, where its dropped work began. Without the
    seek, kafka-python would continue a partition that returns to the same member from its
    old position, past the tail that rebuilding its windows needs. ``unused``: per partition,
    the first offset polled and left unused before an earlier positioning failed (where one
    never committed resumes).
    """
    # a later rebalance within the same poll may already have taken some back
    mine = sorted(set(assigned) & transport.assignment())
    committed = transport.committed(mine) if mine else {}
    resumes: dict[Partition, Resume] = {}
    for partition in mine:
        c = committed.get(partition)
        if (kept := checkpoint.unpark(partition, c)) is not None:  # straight back: go on
            transport.seek(partition, kept)
            resumes[partition] = Resume(kept, c, kept=True)
            continue
        restart_at = checkpoint.restart_point(partition)
        if restart_at is None and unused:
            restart_at = unused.get(partition)
        offset = c.offset if c is not None else restart_at
        if offset is not None:
            transport.seek(partition, offset)
        resumes[partition] = Resume(offset, c)
    return resumes


class Positioner:
    """Positions assigned partitions: seeks each to its commit (:func:`position`) and reads
    the alert state saved with it. The broker may not answer (an outage): then the
    partitions stay paused and unpositioned, their records unused, and it tries again
    after a backoff; a partition with no commit then resumes at the first record it left
    unused, so nothing is skipped."""

    def __init__(
        self, transport: Transport, checkpoint: Checkpoint, state: StateStore, backoff: Backoff
    ) -> None:
        self.transport, self.checkpoint, self.state, self.backoff = transport, checkpoint, state, backoff
        self.rebalance = Rebalance()
        self._pending: set[Partition] = set()  # assigned, not positioned yet
        self._unused: dict[Partition, int] = {}  # first offset polled while unpositioned
        self._resumes: dict[Partition, Resume] = {}  # positioned, no records yet

    def pending(self) -> bool:
        return bool(self._pending)

    def unpositioned(self) -> set[Partition]:
        return set(self._pending)

    def position(
        self, assigned: Collection[Partition], polled: Mapping[Partition, list[Record]]
    ) -> set[Partition]:
        """Position ``assigned`` (and those that failed before); returns the partitions whose
        records in this poll (``polled``) are not to be used: sought elsewhere, or not
        positioned yet."""
        self._pending.update(assigned)
        if not self._pending:
            return set()
        if not self.backoff.waiting() and (sought := self._try()) is not None:
            return sought
        for p in self._pending & polled.keys():
            # unused: one without a commit must resume at the first of them
            self._unused.setdefault(p, polled[p][0].offset)
        return set(self._pending)

    def _try(self) -> set[Partition] | None:
        """Position the pending partitions; those sought, or None when the broker failed."""
        mine = self._pending & self.transport.assignment()
        resumes: dict[Partition, Resume] = {}
        try:
            resumes = position(self.transport, mine, self.checkpoint, self._unused)
            for p, r in resumes.items():
                if r.committed is not None and not r.kept:
                    saved = self.state.load(p, scored_through(r.committed, p), strict=True)
                    resumes[p] = Resume(r.offset, r.committed, saved)
        except TransportError as exc:
            for p, r in resumes.items():  # where dropped work began: used up by position()
                if r.committed is None and r.offset is not None:
                    self._unused.setdefault(p, r.offset)
            delay = self.backoff.fail()
            log.warning("%s not positioned, trying again in %.1f s: %s", names(mine), delay, exc)
            return None
        self.backoff.succeed()
        self._resumes.update(resumes)
        self._pending.clear()
        for p in resumes:
            self._unused.pop(p, None)
        return {p for p, r in resumes.items() if r.offset is not None}

    def take_kept(self) -> dict[Partition, int]:
        """The partitions positioned where their parked progress goes on, with that offset."""
        kept = {p: r.offset for p, r in self._resumes.items() if r.kept and r.offset is not None}
        for p in kept:
            del self._resumes[p]
        return kept

    def take(self, partition: Partition) -> Resume:
        """Where ``partition`` resumed (once: at its first records)."""
        return self._resumes.pop(partition, Resume(None, None))

    def forget(self, partitions: Collection[Partition]) -> None:
        for p in partitions:
            self._resumes.pop(p, None)
            self._pending.discard(p)
            self._unused.pop(p, None)
