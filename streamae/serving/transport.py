"""The transport: what the serving loop needs of a Kafka client, in our own types.

The loop and every serving module but the transport implementations see only this
module: :class:`Partition`, :class:`Record`, :class:`Offset`, :class:`Delivery` and the
:class:`Transport` protocol. ``kafka_python.py`` implements it on kafka-python; another
client library is one more module implementing the same protocol (registered in
``backends.py``). Errors are ours too (``streamae.serving.errors``): a transport raises
:class:`CommitRefused`, :class:`CommitTimeout`, :class:`TransportTimeout` or
:class:`DeliveryError`, never its library's exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from streamae.serving.errors import (  # re-exported: one import for a transport's contract
    CommitRefused,
    CommitTimeout,
    DeliveryError,
    TransportError,
    TransportTimeout,
)

__all__ = [
    "CommitRefused",
    "CommitTimeout",
    "Delivery",
    "DeliveryError",
    "Header",
    "Offset",
    "Partition",
    "PartitionsCallback",
    "Record",
    "Transport",
    "TransportError",
    "TransportTimeout",
]

Header = tuple[str, bytes]


@dataclass(frozen=True, order=True)
class Partition:
    """One partition of one topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class Record(NamedTuple):
    """One consumed record.

    A NamedTuple rather than a frozen dataclass: one is built per consumed record, on the
    hot path, and a NamedTuple builds about three times faster; it is immutable all the same.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Offset:
    """A committed position: the next offset to read, and the metadata stored with it."""

    offset: int
    metadata: str = ""


class Delivery(Protocol):
    """The handle of one send, to wait on its acknowledgement."""

    def failure(self) -> BaseException | None:
        """The error the send already failed with; None while in flight or once acknowledged."""
        ...

    def wait(self, timeout_s: float) -> None:
        """Block until acknowledged; raise :class:`DeliveryError` naming the cause (the
        broker's or client's error, or the timeout) otherwise."""
        ...


PartitionsCallback = Callable[[Collection[Partition]], None]


class Transport(Protocol):
    """A consumer-group member and a producer on one cluster.

    ``on_assign`` and ``on_revoke`` may run on the client's own thread (kafka-python runs
    them on its IO thread, during :meth:`poll` or :meth:`close`) and must neither block
    nor call back into the transport: record the change and apply it after :meth:`poll`.
    """

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        """Join the group for ``topics``; rebalances report through the two callbacks."""
        ...

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        """Records since the last poll, grouped per partition in offset order (may be empty)."""
        ...

    def assignment(self) -> set[Partition]:
        """The partitions this member holds now (call from the polling thread)."""
        ...

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on (it must be assigned)."""
        ...

    def committed(self, partitions: Collection[Partition]) -> dict[Partition, Offset | None]:
        """The group's committed position of each partition; None where nothing was committed."""
        ...

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        """Commit synchronously; :class:`CommitRefused` when a rebalance took the partitions,
        :class:`CommitTimeout` when the group coordinator did not answer in time."""
        ...

    def partitions_for_topic(self, topic: str) -> set[int]:
        """Partition ids of ``topic`` as the cluster reports them now (empty when unknown)."""
        ...

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> Delivery:
        """Queue one record (``value`` None: a tombstone); raise :class:`DeliveryError` if it
        cannot even be queued."""
        ...

    def flush(self, timeout_s: float) -> None:
        """Send everything queued and wait (at most ``timeout_s``) until every send is
        acknowledged or failed; failures are reported by the :class:`Delivery` handles."""
        ...

    def read_last(self, partition: Partition, timeout_s: float) -> Record | None:
        """The last record of ``partition`` (outside the group), or None when it is empty;
        :class:`TransportTimeout` when it cannot be read in time."""
        ...

    def close(self) -> None:
        """Leave the group (committing nothing) and close every client; never raises."""
        ...
