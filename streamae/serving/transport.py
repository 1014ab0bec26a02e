"""The transport: what the serving loop needs of a Kafka client, in our own types.

The loop and every serving module but the transport implementations see only this
module: :class:`Partition`, :class:`Record`, :class:`Offset`, :class:`Delivery` and the
:class:`Transport` protocol. ``kafka_python.py`` implements it on kafka-python and
``confluent.py`` on confluent-kafka (librdkafka); a backend is chosen by name in
``backends.py``. Errors are ours too (``streamae.serving.errors``): a transport raises
:class:`CommitRefused`, :class:`CommitTimeout`, :class:`TransportTimeout`,
:class:`TransactionFailed` or a :class:`DeliveryError` kind, never its library's exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from streamae.serving.errors import (  # re-exported: one import for a transport's contract
    CommitRefused,
    CommitTimeout,
    DeliveryError,
    DeliveryFatal,
    RecordRejected,
    TransactionFailed,
    TransportError,
    TransportTimeout,
)

__all__ = [
    "CommitRefused",
    "CommitTimeout",
    "Deliveries",
    "Delivery",
    "DeliveryError",
    "DeliveryFatal",
    "Header",
    "Offset",
    "Partition",
    "PartitionsCallback",
    "Record",
    "RecordRejected",
    "TransactionFailed",
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
    """The handle of one send: in flight, acknowledged, or failed (after the client's own
    retries). :meth:`Transport.flush` is what waits; a handle only reports."""

    def done(self) -> bool:
        """Whether the send is acknowledged or failed (False while in flight)."""
        ...

    def failure(self) -> DeliveryError | None:
        """Why the send failed, as one of our kinds (:class:`DeliveryError`: transient,
        :class:`RecordRejected`, :class:`DeliveryFatal`; the library's error is the
        ``__cause__``); None while in flight or once acknowledged."""
        ...


class Deliveries(Protocol):
    """The handle of one batch of sends (:meth:`Transport.send_batch`): one object for all,
    not one per record."""

    def done(self) -> bool:
        """Whether every record of the batch is acknowledged or failed."""
        ...

    def failures(self) -> dict[int, DeliveryError]:
        """The records that failed so far (index in the batch → why, as for :meth:`Delivery.failure`)."""
        ...


PartitionsCallback = Callable[[Collection[Partition]], None]


class Transport(Protocol):
    """A consumer-group member and a producer on one cluster.

    ``on_assign`` and ``on_revoke`` may run on the client's own thread (kafka-python runs
    them on its IO thread, during :meth:`poll` or :meth:`close`) and must neither block
    nor call back into the transport: record the change and apply it after :meth:`poll`.
    A partition assigned by a poll is read from where :meth:`seek` puts it before the next
    poll, else from its committed offset (or the reset policy).

    With ``STREAMAE_KAFKA__DELIVERY=exactly_once`` the producer is transactional: sends
    between :meth:`begin_transaction` and :meth:`commit_transaction` become visible to
    ``read_committed`` readers together with the committed offsets, or not at all.
    """

    #: whether sends go through transactions (``begin_transaction`` ... ``commit_transaction``)
    transactional: bool

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

    def pause(self, partitions: Collection[Partition]) -> None:
        """Stop fetching ``partitions`` (held ones only) until :meth:`resume`; polls go on
        returning the others and keep the membership alive."""
        ...

    def resume(self, partitions: Collection[Partition]) -> None:
        """Fetch ``partitions`` again from their position."""
        ...

    def highwater(self, partition: Partition) -> int | None:
        """The end of a held partition as the client last heard it from the broker (no
        request is made); None when not known yet."""
        ...

    def lag(self) -> dict[Partition, int]:
        """Records between each held partition's position and its end, where the client
        knows both without asking the broker (partitions not known are left out)."""
        ...

    def begin_transaction(self) -> None:
        """Start a transaction (exactly-once only)."""
        ...

    def commit_transaction(self, offsets: Mapping[Partition, Offset]) -> None:
        """Commit ``offsets`` with the transaction's sends, atomically (exactly-once only).
        Raises :class:`TransportTimeout` (outcome unknown: commit again later),
        :class:`TransactionFailed` or :class:`CommitRefused` (the group moved on): abort it
        then; :class:`DeliveryFatal` (fenced, unauthorised)."""
        ...

    def abort_transaction(self) -> None:
        """Abort the open transaction, if any; :class:`TransportTimeout` when the broker
        does not answer in time (try again)."""
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
        """Queue one record (``value`` None: a tombstone). Never raises for the record's
        sake: one the client refuses at once (too large) comes back as a failed handle."""
        ...

    def send_batch(self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes]) -> Deliveries:
        """Queue records ``keys[i], values[i]`` (no headers, default partitioner) with one handle
        for all: the hot path's score messages."""
        ...

    def flush(self, timeout_s: float) -> None:
        """Send everything queued and wait (at most ``timeout_s``) until every send is
        acknowledged or failed; failures are reported by the :class:`Delivery` handles."""
        ...

    def read_last(self, partition: Partition, timeout_s: float) -> Record | None:
        """The last data record of ``partition`` (outside the group; committed ones only in
        exactly-once mode), or None when it has none; :class:`TransportTimeout` when it
        cannot be read in time."""
        ...

    def close(self) -> None:
        """Leave the group (committing nothing) and close every client; never raises."""
        ...
