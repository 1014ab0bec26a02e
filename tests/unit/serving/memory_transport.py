"""An in-memory ``Transport``: topics, one group member, a producer and a clock, no broker.

Like kafka-python it reports rebalances from inside ``poll()``; a test queues them with
:meth:`MemoryTransport.rebalance`. Every operation that matters to delivery order is
logged in :attr:`MemoryTransport.log`, e.g. ``("send", topic)``, ``("flush",)``,
``("commit", {partition: offset})``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from streamae.serving.transport import (
    CommitTimeout,
    DeliveryError,
    Header,
    Offset,
    Partition,
    PartitionsCallback,
    Record,
    RecordRejected,
    TransportError,
    TransportTimeout,
)


class Clock:
    """Monotonic seconds that move only when told (or when a poll waits)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class MemoryDelivery:
    topic: str
    error: DeliveryError | None = None
    finished: bool = False

    def done(self) -> bool:
        return self.finished

    def failure(self) -> DeliveryError | None:
        return self.error if self.finished else None


@dataclass
class MemoryBatch:
    """A batch's handle over one delivery per record, as a client keeps them."""

    deliveries: list[MemoryDelivery]

    def done(self) -> bool:
        return all(d.finished for d in self.deliveries)

    def failures(self) -> dict[int, DeliveryError]:
        return {i: d.error for i, d in enumerate(self.deliveries) if d.finished and d.error is not None}


@dataclass
class _Pending:
    record: Record
    delivery: MemoryDelivery


@dataclass
class MemoryTransport:
    partitions: int = 2
    clock: Clock = field(default_factory=Clock)
    failing_topics: set[str] = field(default_factory=set)  # sends to these fail (transiently) at flush
    max_bytes: dict[str, int] = field(default_factory=dict)  # topic -> its max.message.bytes
    down: bool = False  # the broker is away: nothing acknowledged, commits time out (polls still
    # return what the client fetched before: here, everything)
    transactional: bool = False
    commit_errors: list[TransportError] = field(default_factory=list)  # raised by the next commits
    on_poll: Callable[[MemoryTransport], None] | None = None
    topics: dict[str, list[list[Record]]] = field(default_factory=dict)
    log: list[tuple[object, ...]] = field(default_factory=list)
    commits: dict[Partition, Offset] = field(default_factory=dict)
    polls: int = 0

    def __post_init__(self) -> None:
        self._assigned: set[Partition] = set()
        self._position: dict[Partition, int] = {}
        self._rebalances: list[tuple[set[Partition], set[Partition]]] = []
        self._in_flight: list[_Pending] = []
        self._callbacks: tuple[PartitionsCallback, PartitionsCallback] | None = None
        self.paused: set[Partition] = set()
        self._transaction: list[Record] | None = None  # records sent in the open transaction

    # -- test controls -----------------------------------------------------------------

    def produce(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> Record:
        log = self.topics.setdefault(topic, [[] for _ in range(self.partitions)])[partition]
        record = Record(topic, partition, len(log), key, value)
        log.append(record)
        return record

    def records(self, topic: str, partition: int | None = None) -> list[Record]:
        parts = self.topics.get(topic, [])
        return [r for i, p in enumerate(parts) if partition in (None, i) for r in p]

    def rebalance(self, revoke: Collection[Partition] = (), assign: Collection[Partition] = ()) -> None:
        """Queue a rebalance, reported (revocations first) by the next poll."""
        self._rebalances.append((set(revoke), set(assign)))

    # -- Transport -------------------------------------------------------------------

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        self._callbacks = (on_assign, on_revoke)
        self.rebalance(assign=[Partition(t, p) for t in topics for p in range(self.partitions)])

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self)
        assert self._callbacks is not None, "poll before subscribe"
        on_assign, on_revoke = self._callbacks
        while self._rebalances:
            revoke, assign = self._rebalances.pop(0)
            if revoke:
                self._assigned -= revoke
                on_revoke(sorted(revoke))
            if assign:
                for p in assign - self._assigned:  # the committed position, like a client
                    c = self.commits.get(p)
                    self._position[p] = c.offset if c else self._position.get(p, 0)
                self._assigned |= assign
                on_assign(sorted(assign))
        out: dict[Partition, list[Record]] = {}
        budget = max_records
        for p in sorted(self._assigned - self.paused):
            log = self.records(p.topic, p.partition)
            got = log[self._position[p] : self._position[p] + budget]
            if got:
                out[p] = got
                self._position[p] += len(got)
                budget -= len(got)
        if not out:
            self.clock.advance(timeout_s)  # a poll with nothing to return waits its timeout
        return out

    def assignment(self) -> set[Partition]:
        return set(self._assigned)

    def seek(self, partition: Partition, offset: int) -> None:
        assert partition in self._assigned, f"seek on unassigned {partition}"
        self.log.append(("seek", partition, offset))
        self._position[partition] = offset

    def committed(self, partitions: Collection[Partition]) -> dict[Partition, Offset | None]:
        if self.down:
            raise TransportTimeout("committed offsets: the broker is down")
        return {p: self.commits.get(p) for p in partitions}

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        if self.down:
            raise CommitTimeout("offset commit: the broker is down")
        self.log.append(("commit", dict(offsets)))
        self.commits.update(offsets)

    def pause(self, partitions: Collection[Partition]) -> None:
        self.log.append(("pause", frozenset(partitions)))
        self.paused |= set(partitions) & self._assigned

    def resume(self, partitions: Collection[Partition]) -> None:
        self.log.append(("resume", frozenset(partitions)))
        self.paused -= set(partitions)

    def highwater(self, partition: Partition) -> int | None:
        return len(self.records(partition.topic, partition.partition))

    def lag(self) -> dict[Partition, int]:
        return {p: len(self.records(p.topic, p.partition)) - self._position[p] for p in self._assigned}

    def begin_transaction(self) -> None:
        assert self.transactional and self._transaction is None, "a transaction is open already"
        self.log.append(("begin",))
        self._transaction = []

    def commit_transaction(self, offsets: Mapping[Partition, Offset]) -> None:
        assert self._transaction is not None, "no open transaction"
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        if self.down:
            raise TransportTimeout("transaction commit: the broker is down")
        for r in self._transaction:
            self.produce(r.topic, r.partition, r.key, r.value)
        self.log.append(("commit", dict(offsets)))
        self.commits.update(offsets)
        self._transaction = None

    def abort_transaction(self) -> None:
        if self.down:
            raise TransportTimeout("transaction abort: the broker is down")
        self.log.append(("abort",))
        self._transaction = None

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> MemoryDelivery:
        self.log.append(("send", topic))
        delivery = MemoryDelivery(topic)
        record = Record(topic, partition or 0, -1, key, value, tuple(headers))
        self._in_flight.append(_Pending(record, delivery))
        return delivery

    def send_batch(self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes]) -> MemoryBatch:
        return MemoryBatch([self.send(topic, key, value) for key, value in zip(keys, values)])

    def flush(self, timeout_s: float) -> None:
        self.log.append(("flush",))
        if self.down:
            return  # nothing is acknowledged, nothing fails: the client keeps trying
        in_flight, self._in_flight = self._in_flight, []
        for pending in in_flight:
            r, d = pending.record, pending.delivery
            size = len(r.key or b"") + len(r.value or b"")
            if r.topic in self.failing_topics:
                d.error = DeliveryError(f"not acknowledged by '{r.topic}': broker refused a record")
                d.error.__cause__ = RuntimeError(f"broker refused a record of {r.topic}")
            elif size > self.max_bytes.get(r.topic, 1 << 30):
                d.error = RecordRejected(
                    f"'{r.topic}' refuses the record: MessageSizeTooLarge", "output_too_large"
                )
            elif self._transaction is not None:
                self._transaction.append(r)
            else:
                self.produce(r.topic, r.partition, r.key, r.value)
            d.finished = True

    def read_last(self, partition: Partition, timeout_s: float) -> Record | None:
        if self.down:
            raise TransportTimeout(f"could not read {partition}: the broker is down")
        log = self.records(partition.topic, partition.partition)
        return log[-1] if log else None

    def close(self) -> None:
        self.log.append(("close",))
        if self._callbacks is not None and self._assigned:
            self._callbacks[1](sorted(self._assigned))  # like kafka-python's close()
        self._assigned = set()

    # -- reading back ------------------------------------------------------------------

    def sent(self) -> list[str]:
        """Topics of sends and the other logged steps, in order: ``send:t``, ``flush``, ``commit``."""
        return [f"send:{e[1]}" if e[0] == "send" else str(e[0]) for e in self.log]
