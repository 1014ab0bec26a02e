"""The checkpoint: processed offsets per partition, what to commit, and when.

In the manner of Quix Streams' checkpoint: it collects the offsets processed per
partition since the last commit, refuses offsets that go backwards, and expires on time
*or* on a count of records. What is committed for a partition is a :class:`Mark`:

- ``offset``: the oldest reading still held for an unfinished window, or the next offset
  when none is held, so a restarted consumer replays just enough to rebuild its windows;
- ``scored_through``: the last offset whose outputs are published, carried in the commit
  metadata, so the replay publishes nothing twice.

The loop commits in a fixed order: the outputs published (at-least-once: as they were
scored) → their acknowledgements → the alert/smoothing state saved → commit
(see ``loop.Daemon._commit``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import orjson

from streamae.core.config import Settings
from streamae.serving.errors import OffsetOrderError
from streamae.serving.transport import Offset, Partition

log = logging.getLogger(__name__)


def commit_policy(settings: Settings) -> tuple[float, int]:
    """(interval in seconds, record count): ``STREAMAE_KAFKA__COMMIT_INTERVAL_MS`` (or the
    delivery mode's default) and ``STREAMAE_KAFKA__COMMIT_EVERY``."""
    k = settings.kafka
    return k.commit_interval / 1000, k.commit_every


def metadata(scored_through: int) -> str:
    """Commit metadata: ``{"scored_through": N}``."""
    return orjson.dumps({"scored_through": scored_through}).decode()


def scored_through(committed: Offset | None, where: object = "") -> int:
    """``scored_through`` of a commit; -1 (publish everything again) when absent or unreadable."""
    if committed is None or not committed.metadata:
        return -1
    try:
        # confluent-kafka stores the string's terminating NUL too: other clients read it back
        return int(orjson.loads(committed.metadata.rstrip("\x00"))["scored_through"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("%s: unreadable commit metadata %r; outputs may repeat", where, committed.metadata)
        return -1


@dataclass(frozen=True)
class Mark:
    """What to commit for one partition."""

    offset: int  # the next offset the group reads after a restart
    scored_through: int  # outputs of offsets <= this are published

    def to_offset(self) -> Offset:
        return Offset(self.offset, metadata(self.scored_through))


@dataclass
class _Entry:
    start_offset: int  # the first offset consumed since the assignment
    scored_through: int
    next_offset: int | None = None  # one past the last processed record
    committed: Mark | None = None
    dirty_since: float | None = None  # first processing since the last commit
    uncommitted: int = 0  # records processed since the last commit


class Checkpoint:
    """Per-partition progress between commits.

    Args:
        interval_s: a commit is due this long after the first record processed since the
            last one (0: at every micro-batch boundary).
        every: ...or once this many records were processed since (0: off).
        clock: monotonic seconds (a test passes its own).
    """

    def __init__(
        self, interval_s: float, every: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if interval_s < 0 or every < 0:
            raise ValueError("interval_s and every must be >= 0")
        self.interval_s = interval_s
        self.every = every
        self._clock = clock
        self._entries: dict[Partition, _Entry] = {}
        self._restart_at: dict[Partition, int] = {}  # where dropped work began
        self._parked: dict[Partition, _Entry] = {}  # revoked, every output acknowledged

    def __contains__(self, partition: object) -> bool:
        return partition in self._entries

    def partitions(self) -> list[Partition]:
        return list(self._entries)

    def start(self, partition: Partition, first_offset: int, scored_through: int) -> None:
        """Track ``partition`` from its first record since the assignment."""
        self._entries[partition] = _Entry(first_offset, scored_through)

    def scored_through(self, partition: Partition) -> int:
        return self._entries[partition].scored_through

    def processed(self, partition: Partition, first_offset: int, last_offset: int, count: int) -> None:
        """Note ``count`` records ``first_offset..last_offset`` of ``partition`` as processed."""
        e = self._entries[partition]
        # a paranoid check: a replay must come through a new assignment (start), never here
        if last_offset < first_offset or (e.next_offset is not None and first_offset < e.next_offset):
            raise OffsetOrderError(
                f"{partition}: offsets {first_offset}..{last_offset} after {e.next_offset}: "
                "offsets may only increase between commits"
            )
        e.next_offset = last_offset + 1
        e.uncommitted += count
        if e.dirty_since is None:
            e.dirty_since = self._clock()

    def due(self) -> bool:
        """Whether processed records wait for a commit long enough (or in numbers enough)."""
        wait = self.seconds_until_due()
        return wait is not None and wait <= 0

    def seconds_until_due(self) -> float | None:
        """Seconds until :meth:`due`; None when nothing waits for a commit."""
        dirty = [e for e in self._entries.values() if e.dirty_since is not None]
        if not dirty:
            return None
        if self.every and sum(e.uncommitted for e in dirty) >= self.every:
            return 0.0
        since = min(e.dirty_since for e in dirty if e.dirty_since is not None)
        return since + self.interval_s - self._clock()

    def plan(self, oldest_held: Mapping[Partition, int | None]) -> dict[Partition, Mark]:
        """The mark of every partition whose position moved since its last commit.

        ``oldest_held``: per partition, the oldest offset a window still needs (None: none).
        Call it only when every processed record's windows are scored and published.
        """
        plan: dict[Partition, Mark] = {}
        for partition, e in self._entries.items():
            if e.next_offset is None:
                continue
            oldest = oldest_held.get(partition)
            offset = e.next_offset if oldest is None else min(oldest, e.next_offset)
            mark = Mark(offset, max(e.scored_through, e.next_offset - 1))
            if mark == e.committed:
                e.dirty_since, e.uncommitted = None, 0  # nothing new to commit
            else:
                plan[partition] = mark
        return plan

    def published(self, plan: Mapping[Partition, Mark]) -> None:
        """The outputs of ``plan`` are acknowledged: a replay up to its marks is not republished."""
        for partition, mark in plan.items():
            if (e := self._entries.get(partition)) is not None:
                e.scored_through = max(e.scored_through, mark.scored_through)

    def committed(self, plan: Mapping[Partition, Mark]) -> None:
        """``plan`` was committed."""
        for partition, mark in plan.items():
            if (e := self._entries.get(partition)) is not None:
                e.committed, e.dirty_since, e.uncommitted = mark, None, 0

    def drop(self, partitions: Collection[Partition]) -> None:
        """Forget revoked partitions, remembering where their uncommitted work began: a
        partition that comes straight back to this member resumes there (kafka-python would
        continue from its old position, and with no commit there is nothing else to seek to)."""
        for partition in partitions:
            e = self._entries.pop(partition, None)
            if e is not None:
                self._restart_at[partition] = e.committed.offset if e.committed else e.start_offset

    def park(self, partitions: Collection[Partition]) -> None:
        """Revoked partitions whose outputs are all acknowledged: forgotten as by :meth:`drop`,
        but their progress kept, so that one coming straight back goes on (:meth:`unpark`)."""
        for partition in partitions:
            if (e := self._entries.get(partition)) is not None:
                self._parked[partition] = e
        self.drop(partitions)

    def unpark(self, partition: Partition, committed: Offset | None) -> int | None:
        """Where a parked ``partition`` goes on (then :meth:`go_on`, as it is positioned), if the
        group's commit is still the one this member made: nobody moved it meanwhile. None
        otherwise (and it is no longer parked)."""
        e = self._parked.get(partition)
        if e is None or e.next_offset is None or not _same(committed, e.committed):
            self._parked.pop(partition, None)
            return None
        return e.next_offset

    def go_on(self, partition: Partition) -> None:
        """Track the parked ``partition`` again with the progress it had (see :meth:`unpark`)."""
        self._entries[partition] = self._parked.pop(partition)
        self._restart_at.pop(partition, None)

    def forget_parked(self, keep: Collection[Partition] = ()) -> list[Partition]:
        """Forget the parked partitions but ``keep``; which were forgotten."""
        gone = [p for p in self._parked if p not in keep]
        for p in gone:
            del self._parked[p]
        return gone

    def restart_point(self, partition: Partition) -> int | None:
        """Where this member's dropped work on ``partition`` began (once), or None."""
        return self._restart_at.pop(partition, None)


def _same(committed: Offset | None, ours: Mark | None) -> bool:
    """Whether the group's commit is ``ours`` (metadata compared as read back: confluent-kafka
    may add a NUL)."""
    if committed is None or ours is None:
        return committed is None and ours is None
    return committed.offset == ours.offset and scored_through(committed) == ours.scored_through
