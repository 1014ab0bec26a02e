"""A topic's records over a time range, read once for the retraining job: each partition from
the first offset at or after ``since`` (looked up by timestamp) to the first at or after
``until``, or to its end offset when the read began (so a busy topic still ends). No consumer
group is joined and nothing is committed: the daemon's progress is untouched."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streamae.core.config import KafkaSettings
from streamae.serving import errors
from streamae.serving.clients.kafka_python import group_free_consumer

log = logging.getLogger(__name__)


def read_range(
    s: KafkaSettings, topic: str, since: float, until: float | None = None, stall_s: float = 30.0
) -> Iterator[list[ConsumerRecord]]:
    """Batches of the records of ``topic`` with broker timestamps in ``[since, until)`` (epoch
    s; ``until`` None: up to the end offsets now), partition by partition in offset order.
    Raises :class:`errors.TransportError` when no record arrives for ``stall_s`` while some
    are still due."""
    consumer = group_free_consumer(s)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            raise errors.TransportError(f"topic {topic!r} does not exist at {s.bootstrap_servers}")
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        starts = _offsets_at(consumer, parts, since, ends)
        stops = _offsets_at(consumer, parts, until, ends) if until is not None else ends
        due = {tp: stops[tp] for tp in parts if stops[tp] > starts[tp]}
        for tp in parts:
            consumer.seek(tp, starts[tp])
        log.info("reading %d records of %s", sum(stops[tp] - starts[tp] for tp in due), topic)
        last = time.monotonic()
        while due:
            polled = consumer.poll(timeout_ms=500, max_records=10_000)
            if not polled and time.monotonic() - last > stall_s:
                raise errors.TransportError(
                    f"no records from {topic} for {stall_s:g} s; {len(due)} partitions unread"
                )
            for tp, records in polled.items():
                if tp not in due:
                    continue
                last = time.monotonic()
                kept = [r for r in records if r.offset < due[tp]]
                if kept:
                    yield kept
                if records[-1].offset + 1 >= due[tp]:
                    del due[tp]
                    consumer.pause(tp)
    finally:
        consumer.close()


def _offsets_at(
    consumer: KafkaConsumer, parts: list[TopicPartition], at: float, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The first offset of each partition with a timestamp at or after ``at`` (its end when none)."""
    found = consumer.offsets_for_times({tp: int(at * 1000) for tp in parts})
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in parts}
