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
from collections.abc import Collection
from dataclasses import dataclass

from streamae.serving.checkpoint import Checkpoint
from streamae.serving.transport import Offset, Partition, Transport

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
    """Where an assigned partition resumes, and the commit it resumes from (if any)."""

    offset: int | None  # None: wherever the client's reset policy puts it
    committed: Offset | None


def position(
    transport: Transport, assigned: Collection[Partition], checkpoint: Checkpoint
) -> dict[Partition, Resume]:
    """Seek newly assigned partitions to where their unfinished work begins.

    That is the committed offset or, for a partition never committed that this member held
    before, where its dropped work began. Without the seek, kafka-python would continue a
    partition that returns to the same member from its old position, past the tail that
    rebuilding its windows needs.
    """
    # a later rebalance within the same poll may already have taken some back
    mine = sorted(set(assigned) & transport.assignment())
    committed = transport.committed(mine) if mine else {}
    resumes: dict[Partition, Resume] = {}
    for partition in mine:
        restart_at = checkpoint.restart_point(partition)
        c = committed.get(partition)
        offset = c.offset if c is not None else restart_at
        if offset is not None:
            transport.seek(partition, offset)
        resumes[partition] = Resume(offset, c)
    return resumes
