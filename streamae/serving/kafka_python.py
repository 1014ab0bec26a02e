"""The kafka-python transport, and the admin and test helpers built on kafka-python.

The one module of the serving path that imports ``kafka``: :class:`KafkaPythonTransport`
implements ``transport.Transport`` and turns kafka-python's untyped ``**configs``,
structs and exceptions into ours.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from streamae.core.config import KafkaSettings
from streamae.serving import errors
from streamae.serving.transport import Header, Offset, Partition, PartitionsCallback, Record

log = logging.getLogger(__name__)


def client_configs(s: KafkaSettings) -> dict[str, Any]:
    """Connection settings shared by consumers, producers and the admin client."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": s.client_id,
        "security_protocol": s.security_protocol,
    }
    if s.sasl_mechanism:
        cfg["sasl_mechanism"] = s.sasl_mechanism
        cfg["sasl_plain_username"] = s.sasl_username
        cfg["sasl_plain_password"] = s.sasl_password.get_secret_value() if s.sasl_password else None
    return cfg


def make_producer(s: KafkaSettings) -> KafkaProducer:
    """A producer whose acknowledgements mean the record is replicated (``acks=all``)."""
    return KafkaProducer(
        **client_configs(s),
        acks="all",
        request_timeout_ms=s.request_timeout_ms,
        linger_ms=s.linger_ms,
        batch_size=s.batch_size,
        retries=5,
        max_in_flight_requests_per_connection=1,  # keeps per-key order across retries
    )


def group_free_consumer(s: KafkaSettings) -> KafkaConsumer:
    """A consumer outside any group (reads chosen partitions; commits nothing)."""
    return KafkaConsumer(**client_configs(s), enable_auto_commit=False, group_id=None)


def _tp(p: Partition) -> TopicPartition:
    return TopicPartition(p.topic, p.partition)


@contextlib.contextmanager
def _translated(
    what: str,
    timeout: type[errors.TransportTimeout] = errors.TransportTimeout,
    other: type[errors.TransportError] = errors.TransportError,
) -> Iterator[None]:
    """kafka-python's exceptions as ours (the original is the ``__cause__``)."""
    try:
        yield
    except (kafka_errors.CommitFailedError, kafka_errors.RebalanceInProgressError) as exc:
        raise errors.CommitRefused(f"{what}: {exc}") from exc
    except kafka_errors.KafkaTimeoutError as exc:
        raise timeout(f"{what}: no answer in time: {exc}") from exc
    except kafka_errors.KafkaError as exc:
        raise other(f"{what}: {exc!r}") from exc


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """kafka-python requires a subclass; this one hands our partitions to the callbacks."""

    def __init__(self, on_assign: PartitionsCallback, on_revoke: PartitionsCallback) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self._on_revoke([Partition(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._on_assign([Partition(tp.topic, tp.partition) for tp in assigned])


class _Delivery:
    __slots__ = ("_future",)

    def __init__(self, future: FutureRecordMetadata) -> None:
        self._future = future

    def failure(self) -> BaseException | None:
        f = self._future
        return f.exception if f.is_done else None

    def wait(self, timeout_s: float) -> None:
        try:
            self._future.get(timeout=timeout_s)
        except Exception as exc:  # the send's own failure, or our wait's timeout
            if self._future.failed():
                raise errors.DeliveryError(f"not acknowledged: {exc!r}") from exc
            raise errors.DeliveryError(f"not acknowledged within {timeout_s:g} s") from exc


class KafkaPythonTransport:
    """``transport.Transport`` on kafka-python: a group consumer, a producer, and (for state
    restores) a consumer outside the group."""

    def __init__(self, k: KafkaSettings) -> None:
        self.k = k
        # a group member that never commits on its own: the loop commits after outputs land
        self._consumer = KafkaConsumer(
            **client_configs(k),
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset,
            max_poll_records=k.max_poll_records,
            session_timeout_ms=k.session_timeout_ms,
            max_poll_interval_ms=k.max_poll_interval_ms,
        )
        self._producer = make_producer(k)
        self._reader: KafkaConsumer | None = None

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        self._consumer.subscribe(list(topics), listener=_Listener(on_assign, on_revoke))

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        polled = self._consumer.poll(timeout_ms=max(0, round(1000 * timeout_s)), max_records=max_records)
        return {
            Partition(tp.topic, tp.partition): [
                Record(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp)
                for r in records
            ]
            for tp, records in polled.items()
        }

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def seek(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(_tp(partition), offset)

    def committed(self, partitions: Collection[Partition]) -> dict[Partition, Offset | None]:
        out: dict[Partition, Offset | None] = {}
        for p in partitions:
            with _translated(f"{p}: committed offset not read"):
                c = self._consumer.committed(_tp(p), metadata=True, timeout_ms=self.k.request_timeout_ms)
            no_commit = c is None or c.offset is None or c.offset < 0
            out[p] = None if no_commit else Offset(c.offset, c.metadata or "")
        return out

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        structs = {_tp(p): OffsetAndMetadata(o.offset, o.metadata, -1) for p, o in offsets.items()}
        with _translated("offset commit", errors.CommitTimeout):
            self._consumer.commit(structs)

    def partitions_for_topic(self, topic: str) -> set[int]:
        with _translated(f"metadata of '{topic}' not read"):
            self._consumer.topics()  # refreshes the cached metadata
            return set(self._consumer.partitions_for_topic(topic) or ())

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> _Delivery:
        try:
            future = self._producer.send(
                topic, value=value, key=key, headers=list(headers) or None, partition=partition
            )
        except kafka_errors.KafkaError as exc:
            raise errors.DeliveryError(f"cannot send to '{topic}': {exc!r}") from exc
        return _Delivery(future)

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
        deadline = time.monotonic() + timeout_s
        with _translated(f"could not read {partition}", errors.TransportTimeout, errors.TransportTimeout):
            end = reader.end_offsets([tp])[tp]
            if not end:
                return None
            reader.assign([tp])
            reader.seek(tp, end - 1)
            while time.monotonic() < deadline:
                if records := reader.poll(timeout_ms=200).get(tp, []):
                    r = records[-1]
                    return Record(r.topic, r.partition, r.offset, r.key, r.value, (), r.timestamp)
        raise errors.TransportTimeout(f"could not read {partition}@{end - 1} within {timeout_s:g} s")

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


def open_transport(k: KafkaSettings) -> KafkaPythonTransport:
    return KafkaPythonTransport(k)


# -- admin ---------------------------------------------------------------------------
