"""The kafka-python transport, and the admin and test helpers built on kafka-python.

The one module of the serving path that imports ``kafka``: :class:`KafkaPythonTransport`
implements ``transport.Transport`` and turns kafka-python's untyped ``**configs``,
structs and exceptions into ours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.structs import OffsetAndMetadata

from streamae.core.config import KafkaSettings
from streamae.serving import errors
from streamae.serving.clients.kafka_python_errors import Batch, Delivery, translated
from streamae.serving.clients.security import kafka_python_security
from streamae.serving.commit.exactly_once import TransactionalId, commit_or_replace, last_record, within
from streamae.serving.transport import Header, Offset, Partition, PartitionsCallback, Record

log = logging.getLogger(__name__)


def client_configs(s: KafkaSettings) -> dict[str, Any]:
    """Connection settings shared by consumers, producers and the admin client."""
    return {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": s.client_id,
        "reconnect_backoff_max_ms": s.reconnect_backoff_max_ms,
        **kafka_python_security(s),  # TLS and SASL (holds secrets in clear: never log it)
    }


def make_producer(s: KafkaSettings, transactional_id: str | None = None) -> KafkaProducer:
    """A producer whose acknowledgements mean the record is replicated (``acks=all``).

    Transactional (exactly-once) producers are idempotent, with five requests in flight.
    Plain ones are not: kafka-python 3.0 turns any non-retriable produce error of an
    idempotent producer (a record over a topic's ``max.message.bytes``) into a fatal state
    that fails every later send, where the daemon must dead-letter that one record and go
    on. One request in flight per connection keeps per-key order across retries instead.
    """
    idempotent = transactional_id is not None
    return KafkaProducer(
        **client_configs(s),
        acks="all",
        enable_idempotence=idempotent,
        max_in_flight_requests_per_connection=5 if idempotent else 1,
        request_timeout_ms=s.request_timeout_ms,
        delivery_timeout_ms=s.delivery_timeout,
        linger_ms=s.linger_ms,
        batch_size=s.batch_size,
        compression_type=None if s.compression_type == "none" else s.compression_type,
        transactional_id=transactional_id,
        # the coordinator must not abort a transaction whose records are still being retried
        transaction_timeout_ms=max(60_000, s.delivery_timeout),
    )


def _close_fenced(producer: KafkaProducer) -> None:
    """Close a fenced producer without waiting (its sends can only fail now). kafka-python's
    close flushes first and raises while batches are pending, before it stops its sender
    thread: that thread is then stopped directly (there is no public force close)."""
    try:
        producer.close(timeout=0)
    except kafka_errors.KafkaError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()


def group_free_consumer(s: KafkaSettings) -> KafkaConsumer:
    """A consumer outside any group (reads chosen partitions; commits nothing)."""
    return KafkaConsumer(
        **client_configs(s), enable_auto_commit=False, group_id=None, isolation_level=isolation(s)
    )


def isolation(s: KafkaSettings) -> str:
    """What the daemon reads: only committed transactions when it writes in transactions."""
    return "read_committed" if s.delivery == "exactly_once" else "read_uncommitted"


def _tp(p: Partition) -> TopicPartition:
    return TopicPartition(p.topic, p.partition)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """kafka-python requires a subclass; this one hands our partitions to the callbacks."""

    def __init__(self, on_assign: PartitionsCallback, on_revoke: PartitionsCallback) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self._on_revoke([Partition(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._on_assign([Partition(tp.topic, tp.partition) for tp in assigned])


class KafkaPythonTransport:
    """``transport.Transport`` on kafka-python: a group consumer, a producer (transactional
    in exactly-once mode), and (for state restores) a consumer outside the group."""

    def __init__(self, k: KafkaSettings) -> None:
        self.k = k
        self.transactional = k.delivery == "exactly_once"
        self._txn_id = TransactionalId(k) if self.transactional else None
        # a group member that never commits on its own: the loop commits after outputs land
        self._consumer = KafkaConsumer(
            **client_configs(k),
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset,
            max_poll_records=k.max_poll_records,
            session_timeout_ms=k.session_timeout_ms,
            max_poll_interval_ms=k.max_poll_interval_ms,
            isolation_level=isolation(k),
        )
        self._producer = self._new_producer()
        self._replaced = False  # the producer was replaced in the open transaction: nothing to abort
        self._reader: KafkaConsumer | None = None
        self._next: dict[Partition, int] = {}  # one past the last record polled, for lag

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        self._consumer.subscribe(list(topics), listener=_Listener(on_assign, on_revoke))

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        polled = self._consumer.poll(timeout_ms=max(0, round(1000 * timeout_s)), max_records=max_records)
        out = {
            Partition(tp.topic, tp.partition): [
                Record(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp)
                for r in records
            ]
            for tp, records in polled.items()
        }
        for p, records in out.items():
            self._next[p] = records[-1].offset + 1
        return out

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def seek(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(_tp(partition), offset)
        self._next[partition] = offset

    def committed(self, partitions: Collection[Partition]) -> dict[Partition, Offset | None]:
        out: dict[Partition, Offset | None] = {}
        for p in partitions:
            with translated(f"{p}: committed offset not read"):
                c = self._consumer.committed(_tp(p), metadata=True, timeout_ms=self.k.request_timeout_ms)
            no_commit = c is None or c.offset is None or c.offset < 0
            out[p] = None if no_commit else Offset(c.offset, c.metadata or "")
        return out

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        with translated("offset commit", errors.CommitTimeout):
            self._consumer.commit(_structs(offsets))

    def pause(self, partitions: Collection[Partition]) -> None:
        held = self._consumer.assignment()
        self._consumer.pause(*[tp for tp in map(_tp, partitions) if tp in held])

    def resume(self, partitions: Collection[Partition]) -> None:
        held = self._consumer.assignment()
        self._consumer.resume(*[tp for tp in map(_tp, partitions) if tp in held])

    def highwater(self, partition: Partition) -> int | None:
        end = self._consumer.highwater(_tp(partition))
        return None if end is None else int(end)

    def lag(self) -> dict[Partition, int]:
        out = {}
        for tp in self._consumer.assignment():
            p = Partition(tp.topic, tp.partition)
            end, position = self.highwater(p), self._next.get(p)
            if end is not None and position is not None:
                out[p] = max(0, end - position)
        return out

    def _new_producer(self) -> KafkaProducer:
        producer = make_producer(self.k, self._txn_id.value if self._txn_id else None)
        if self.transactional:
            with translated("initialising transactions", other=errors.DeliveryFatal):
                producer.init_transactions()  # fences (and aborts) a predecessor's open one
        return producer

    def begin_transaction(self) -> None:
        self._replaced = False
        with translated("beginning a transaction", other=errors.DeliveryFatal):
            self._producer.begin_transaction()

    def commit_transaction(self, offsets: Mapping[Partition, Offset]) -> None:
        def commit() -> None:
            if offsets:
                self._producer.send_offsets_to_transaction(_structs(offsets), self._consumer.group_metadata())
            self._producer.commit_transaction()

        # kafka-python waits for the outcome without a timeout of its own
        with translated("committing a transaction", other=errors.TransactionFailed):
            commit_or_replace(commit, 2 * self.k.request_timeout_ms / 1000 + 5, self._replace_producer)

    def _replace_producer(self) -> None:
        """A new producer with the same transactional id fences the old one, aborting its
        transaction; the old one is closed without waiting (its sends can only fail now)."""
        old, self._producer, self._replaced = self._producer, self._new_producer(), True
        try:
            within(lambda: _close_fenced(old), 5)
        except Exception as exc:  # the new producer serves: a failed close must not stop the daemon
            log.warning("closing the replaced producer failed: %r", exc)

    def abort_transaction(self) -> None:
        if self._replaced:  # the new producer fenced the transaction: it is aborted
            return
        try:
            with translated("aborting a transaction", other=errors.TransactionFailed):
                if within(self._producer.abort_transaction, self.k.request_timeout_ms / 1000):
                    return
        except errors.TransactionFailed as exc:
            # kafka-python refuses to abort while it bumps the epoch after records expired
            # ("invalid transition from BUMPING_PRODUCER_EPOCH"): fencing aborts it as well
            log.warning("the producer refused to abort the transaction (%s): replacing it", exc)
        self._replace_producer()

    def partitions_for_topic(self, topic: str) -> set[int]:
        with translated(f"metadata of '{topic}' not read"):
            self._consumer.topics()  # refreshes the cached metadata
            return set(self._consumer.partitions_for_topic(topic) or ())

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> Delivery:
        try:
            future = self._producer.send(
                topic, value=value, key=key, headers=list(headers) or None, partition=partition
            )
        except kafka_errors.KafkaError as exc:  # refused before it was queued (e.g. too large)
            return Delivery(None, topic, exc)
        return Delivery(future, topic)

    def send_batch(self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes]) -> Batch:
        batch, send = Batch(topic), self._producer.send
        for key, value in zip(keys, values):
            try:
                batch.add(send(topic, value=value, key=key))
            except kafka_errors.KafkaError as exc:  # refused before it was queued (e.g. too large)
                batch.add(None, exc)
        return batch

    def flush(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
                return
            except kafka_errors.KafkaTimeoutError:
                return  # the handles report what is still in flight
            except kafka_errors.KafkaError:
                # 'Future not done': a batch too large for the broker was split and its
                # records are in flight again; wait for those too
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.01)

    def read_last(self, partition: Partition, timeout_s: float) -> Record | None:
        reader = self._reader = self._reader or group_free_consumer(self.k)
        tp = _tp(partition)
        with translated(f"could not read {partition}", errors.TransportTimeout, errors.TransportTimeout):
            first = reader.beginning_offsets([tp])[tp]
            end = reader.end_offsets([tp])[tp]
            reader.assign([tp])
            return last_record(
                lambda offset: reader.seek(tp, offset),
                lambda: [_record(r) for r in reader.poll(timeout_ms=200).get(tp, [])],
                lambda: reader.position(tp, timeout_ms=1000),
                partition,
                first,
                end,
                timeout_s,
            )

    def close(self) -> None:
        """Close every client; a failing close must not mask the error that stopped the loop
        (after a delivery failure kafka-python's producer raises again on close)."""
        closers: list[tuple[str, Callable[[], object]]] = [
            ("consumer", lambda: self._consumer.close(autocommit=False)),
            ("producer", lambda: self._producer.close(timeout=10)),
        ]
        if self._reader is not None:
            closers.insert(0, ("state reader", self._reader.close))
        for name, close in closers:
            try:
                close()
            except Exception as exc:
                log.warning("closing the %s failed: %r", name, exc)
        if self._txn_id is not None:
            self._txn_id.release()


def _structs(offsets: Mapping[Partition, Offset]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {_tp(p): OffsetAndMetadata(o.offset, o.metadata, -1) for p, o in offsets.items()}


def _record(r: Any) -> Record:
    return Record(r.topic, r.partition, r.offset, r.key, r.value, (), r.timestamp)


def open_transport(k: KafkaSettings) -> KafkaPythonTransport:
    return KafkaPythonTransport(k)


# -- admin ---------------------------------------------------------------------------
