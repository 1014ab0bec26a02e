"""The confluent-kafka (librdkafka) transport: ``transport.Transport`` on a C client
(``STREAMAE_KAFKA__BACKEND=confluent-kafka``, the default).

Batch consume, delivery callbacks served by ``flush``, an idempotent producer (five requests
in flight without reordering or duplicates). Rebalance callbacks only record the change, as
with kafka-python, so the loop behaves the same whichever library serves. A ``seek`` issued
before a new partition's fetcher starts is overridden by librdkafka's committed-offset
lookup, so assigned partitions start paused until :meth:`ConfluentTransport.seek` (or, when
the loop had nothing to seek, the next poll) resumes them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streamae.core.config import KafkaSettings
from streamae.serving import errors
from streamae.serving.clients.confluent_config import client_configs, producer_config
from streamae.serving.clients.confluent_errors import Batch, Delivery, translated
from streamae.serving.commit.exactly_once import TransactionalId, commit_or_replace, last_record
from streamae.serving.transport import Header, Offset, Partition, PartitionsCallback, Record

log = logging.getLogger(__name__)


def _tp(p: Partition, offset: int | None = None, metadata: str | None = None) -> TopicPartition:
    if offset is None:
        return TopicPartition(p.topic, p.partition)
    if metadata is None:
        return TopicPartition(p.topic, p.partition, offset)
    return TopicPartition(p.topic, p.partition, offset, metadata=metadata)


class ConfluentTransport:
    """``transport.Transport`` on confluent-kafka: a group consumer, a producer
    (transactional in exactly-once mode) and, for state restores, a consumer outside the group."""

    def __init__(self, k: KafkaSettings) -> None:
        self.k = k
        self.transactional = k.delivery == "exactly_once"
        self._txn_id: TransactionalId | None = None
        self._timeout_s = k.request_timeout_ms / 1000
        self._consumer = Consumer(
            {
                **client_configs(k),
                "group.id": k.group_id,
                "enable.auto.commit": False,  # the loop commits after outputs land
                "enable.auto.offset.store": False,
                "auto.offset.reset": k.auto_offset_reset,
                "session.timeout.ms": k.session_timeout_ms,
                "max.poll.interval.ms": k.max_poll_interval_ms,
                "isolation.level": _isolation(k),
            }
        )
        if self.transactional:
            self._txn_id = TransactionalId(k)
        self._producer_config = producer_config(k, self._txn_id.value if self._txn_id else None)
        self._producer = self._new_producer()
        self._replaced = False  # the producer was replaced in the open transaction: nothing to abort
        self._reader: Consumer | None = None
        self._unpositioned: set[Partition] = set()  # assigned, paused until sought or polled
        self._paused: set[Partition] = set()  # paused by the loop
        self._next: dict[Partition, int] = {}  # one past the last record polled, for lag

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        def assigned(consumer: Consumer, tps: list[TopicPartition]) -> None:
            consumer.assign(tps)
            consumer.pause(tps)  # see the module's docstring
            ps = [Partition(tp.topic, tp.partition) for tp in tps]
            self._unpositioned.update(ps)
            on_assign(ps)

        def revoked(_consumer: Consumer, tps: list[TopicPartition]) -> None:
            ps = [Partition(tp.topic, tp.partition) for tp in tps]
            self._unpositioned.difference_update(ps)
            self._paused.difference_update(ps)
            on_revoke(ps)

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        if self._unpositioned:  # the loop had its chance to seek them: their committed offsets
            self._consumer.resume([_tp(p) for p in self._unpositioned - self._paused])
            self._unpositioned.clear()
        grouped: dict[tuple[str, int], list[Record]] = {}
        for m in self._fetched(timeout_s, max_records):
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise errors.TransportError(f"consumer failed: {err}")
                log.debug("consume: %s", err)  # transient (broker down...): the client retries
                continue
            record = _record(m)
            grouped.setdefault((record.topic, record.partition), []).append(record)
        out = {Partition(*where): records for where, records in grouped.items()}
        for p, records in out.items():
            self._next[p] = records[-1].offset + 1
        return out

    def _fetched(self, timeout_s: float, max_records: int) -> list[Message]:
        """What is fetched already, else the first record to come in ``timeout_s`` and what came
        with it: ``consume(n, timeout)`` alone waits for all ``n`` (or the timeout) on a quiet
        topic, which a caught-up consumer would add to every record's latency."""
        messages = self._consumer.consume(max_records, 0)
        if messages:
            return messages
        first = self._consumer.poll(timeout_s)
        if first is None:
            return []
        return [first, *self._consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]

    def assignment(self) -> set[Partition]:
        with translated("assignment"):
            return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def seek(self, partition: Partition, offset: int) -> None:
        with translated(f"seek {partition} to {offset}"):
            self._consumer.seek(_tp(partition, offset))
            if partition in self._unpositioned:
                self._unpositioned.discard(partition)
                if partition not in self._paused:
                    self._consumer.resume([_tp(partition)])
        self._next[partition] = offset

    def committed(self, partitions: Collection[Partition]) -> dict[Partition, Offset | None]:
        with translated("committed offsets not read"):
            got = self._consumer.committed([_tp(p) for p in partitions], timeout=self._timeout_s)
        out: dict[Partition, Offset | None] = {}
        for tp in got:
            if tp.error is not None:
                raise errors.TransportTimeout(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
            p = Partition(tp.topic, tp.partition)
            out[p] = None if tp.offset < 0 else Offset(tp.offset, tp.metadata or "")
        return out

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        with translated("offset commit", errors.CommitTimeout):
            done = self._consumer.commit(offsets=_structs(offsets), asynchronous=False)
        failed = [tp for tp in done or () if tp.error is not None]
        if failed:
            with translated("offset commit", errors.CommitTimeout):
                raise KafkaException(failed[0].error)

    def pause(self, partitions: Collection[Partition]) -> None:
        mine = set(partitions) & self.assignment()
        self._paused |= mine
        self._consumer.pause([_tp(p) for p in mine])

    def resume(self, partitions: Collection[Partition]) -> None:
        mine = set(partitions) & self.assignment()
        self._paused -= mine
        self._consumer.resume([_tp(p) for p in mine - self._unpositioned])

    def highwater(self, partition: Partition) -> int | None:
        _, end = self._consumer.get_watermark_offsets(_tp(partition), cached=True)
        return end if end >= 0 else None

    def lag(self) -> dict[Partition, int]:
        out = {}
        for p in self.assignment():
            end, position = self.highwater(p), self._next.get(p)
            if end is not None and position is not None:
                out[p] = max(0, end - position)
        return out

    def _new_producer(self) -> Producer:
        producer = Producer(self._producer_config)
        if self.transactional:
            with translated("initialising transactions", other=errors.DeliveryFatal):
                # fences (and aborts) the open transaction of a predecessor with this id
                producer.init_transactions(self._timeout_s)
        return producer

    def begin_transaction(self) -> None:
        self._replaced = False
        with translated("beginning a transaction", other=errors.DeliveryFatal):
            self._producer.begin_transaction()

    def commit_transaction(self, offsets: Mapping[Partition, Offset]) -> None:
        def commit() -> None:
            if offsets:
                group = self._consumer.consumer_group_metadata()
                self._producer.send_offsets_to_transaction(_structs(offsets), group, self._timeout_s)
            self._producer.commit_transaction(self._timeout_s)

        # librdkafka can block past its timeout when the group coordinator it cached went away
        # (a broker restart; librdkafka #5456, #5511)
        with translated("committing a transaction", other=errors.TransactionFailed):
            commit_or_replace(commit, 2 * self._timeout_s + 5, self._replace_producer)

    def _replace_producer(self) -> None:
        self._producer, self._replaced = self._new_producer(), True

    def abort_transaction(self) -> None:
        if self._replaced:  # the new producer fenced the transaction: it is aborted
            return
        with translated("aborting a transaction", other=errors.TransportTimeout):
            self._producer.abort_transaction(self._timeout_s)

    def partitions_for_topic(self, topic: str) -> set[int]:
        with translated(f"metadata of '{topic}' not read"):
            meta = self._consumer.list_topics(topic, timeout=self._timeout_s).topics.get(topic)
        return set() if meta is None or meta.error is not None else set(meta.partitions)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> Delivery:
        d = Delivery(topic, self._idle)
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        if headers:
            extra["headers"] = list(headers)
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=d.on_delivery, **extra)
                return d
            except BufferError:  # the client's queue is full: serve deliveries to make room
                self._producer.poll(0.05)
            except KafkaException as exc:  # refused before it was queued (e.g. too large)
                d.on_delivery(exc.args[0], None)  # type: ignore[arg-type]  # no message to report
                return d

    def send_batch(self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes]) -> Batch:
        batch = Batch(topic, keys, values, self._idle)
        produce, report = self._producer.produce, batch.on_delivery
        for i, (key, value) in enumerate(zip(keys, values)):
            while True:
                try:
                    produce(topic, value, key, on_delivery=report)
                    break
                except BufferError:  # the client's queue is full: serve reports to make room
                    self._producer.poll(0.05)
                except KafkaException as exc:  # refused before it was queued (e.g. too large)
                    batch.refused(i, exc.args[0])
                    break
        return batch

    def _idle(self) -> bool:
        """Whether the producer holds nothing undelivered (every report served)."""
        return len(self._producer) == 0

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)

    def read_last(self, partition: Partition, timeout_s: float) -> Record | None:
        reader = self._reader = self._reader or Consumer(
            {
                **client_configs(self.k),
                "group.id": f"{self.k.group_id}.state-reader",  # never joins: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": True,  # says when the end is reached
                "isolation.level": _isolation(self.k),
            }
        )
        with translated(f"could not read {partition}", errors.TransportTimeout, errors.TransportTimeout):
            first, end = reader.get_watermark_offsets(_tp(partition), timeout=timeout_s)
        at: list[int | None] = [None]

        def seek(offset: int) -> None:
            reader.assign([_tp(partition, offset)])
            at[0] = offset

        def poll() -> list[Record]:
            records = []
            for m in reader.consume(100, 0.2):
                err = m.error()
                if err is None:
                    records.append(r := _record(m))
                    at[0] = r.offset + 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    at[0] = end  # read_committed: the end is the last stable offset
            return records

        with translated(f"could not read {partition}", errors.TransportTimeout, errors.TransportTimeout):
            return last_record(seek, poll, lambda: at[0], partition, first, end, timeout_s)

    def close(self) -> None:
        """Leave the group (committing nothing), close every client; never raises."""
        for name, close in (
            ("state reader", self._reader.close if self._reader is not None else None),
            ("consumer", self._consumer.close),
            ("producer", lambda: self._producer.flush(10)),
        ):
            if close is None:
                continue
            try:
                close()
            except Exception as exc:
                log.warning("closing the %s failed: %r", name, exc)
        if self._txn_id is not None:
            self._txn_id.release()


def _record(m: Message) -> Record:
    # a message without an error has all of these; the library's stubs cannot say so
    headers = tuple(m.headers() or ())
    return Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), headers)  # type: ignore[arg-type]


def _isolation(k: KafkaSettings) -> str:
    return "read_committed" if k.delivery == "exactly_once" else "read_uncommitted"


def _structs(offsets: Mapping[Partition, Offset]) -> list[TopicPartition]:
    return [_tp(p, o.offset, o.metadata) for p, o in offsets.items()]


def open_transport(k: KafkaSettings) -> ConfluentTransport:
    return ConfluentTransport(k)
