"""Kafka administration with kafka-python: wait for the broker, create the daemon's topics,
and the small produce/follow tools the demo, benchmarks and tests use. Not on the hot path."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import NewTopic

from streamae.core.config import KafkaSettings
from streamae.serving import errors
from streamae.serving.clients.kafka_python import client_configs, group_free_consumer, make_producer

log = logging.getLogger(__name__)


def wait_for_broker(s: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Block until the cluster answers, or raise :class:`errors.BrokerUnavailable` naming the address."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            KafkaAdminClient(**client_configs(s), request_timeout_ms=5000).close()
            return
        except kafka_errors.KafkaError as exc:
            if time.monotonic() > deadline:
                raise errors.BrokerUnavailable(
                    f"no Kafka broker answered at {s.bootstrap_servers} "
                    f"(STREAMAE_KAFKA__BOOTSTRAP_SERVERS) within {timeout_s:g} s: {exc}"
                ) from None
            time.sleep(0.5)


def ensure_topics(
    s: KafkaSettings,
    topics: Iterable[str],
    partitions: int = 3,
    configs: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet (replication factor 1 for a local broker)."""
    admin = KafkaAdminClient(**client_configs(s))
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(t, partitions, 1, topic_configs=configs or {})
            for t in dict.fromkeys(topics)
            if t not in existing
        ]
        if new:
            with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):  # another instance won the race
                admin.create_topics(new)
            log.info("created topics %s", [t.name for t in new])
            _wait_for_leaders(admin, [t.name for t in new], s.request_timeout_ms / 1000)
    finally:
        admin.close()


def _led_partitions(admin: KafkaAdminClient, topics: Sequence[str]) -> dict[str, int]:
    """Partitions with a leader, per topic (0 for a topic the broker does not know)."""
    counts = dict.fromkeys(topics, 0)
    for t in admin.describe_topics(list(topics)):
        if t["name"] in counts and t["error_code"] == 0:
            counts[t["name"]] = sum(p["error_code"] == 0 and p["leader_id"] >= 0 for p in t["partitions"])
    return counts


def _wait_for_leaders(admin: KafkaAdminClient, topics: Sequence[str], timeout_s: float) -> None:
    """Creation returns before the new partitions have leaders; a client that looks the
    topics up right away would see them empty (or not at all), so wait until they are led."""
    deadline = time.monotonic() + timeout_s
    while 0 in _led_partitions(admin, topics).values():
        if time.monotonic() > deadline:
            raise kafka_errors.KafkaTimeoutError(
                f"topics {list(topics)} have no partition leaders after {timeout_s:g} s"
            )
        time.sleep(0.1)


def daemon_topics(s: KafkaSettings) -> list[str]:
    return [s.input_topic, s.scores_topic, s.alerts_topic, s.dlq_topic]


def ensure_daemon_topics(s: KafkaSettings, partitions: int = 3) -> None:
    """Input, outputs and dead letters; then the compacted alert-state topic with as many
    partitions as the input (state of input partition p lives in state partition p)."""
    ensure_topics(s, daemon_topics(s), partitions)
    consumer = KafkaConsumer(**client_configs(s), group_id=None)
    try:
        n = len(consumer.partitions_for_topic(s.input_topic) or ()) or partitions
    finally:
        consumer.close()
    ensure_topics(s, [s.state_topic], n, {"cleanup.policy": "compact"})


# -- for tests, the demo and benchmarks -----------------------------------------------


def publish(
    s: KafkaSettings, messages: Iterable[tuple[bytes | None, bytes]], topic: str | None = None
) -> int:
    """Send ``(key, value)`` pairs to ``topic`` (default: the input topic); wait for acks."""
    producer = make_producer(s)
    try:
        n = 0
        for key, value in messages:
            producer.send(topic or s.input_topic, key=key, value=value)
            n += 1
        producer.flush()
        return n
    finally:
        producer.close()


def follow(
    s: KafkaSettings,
    topics: Sequence[str],
    done: Callable[[], bool],
    timeout_s: float = 60,
    settle_ms: int = 500,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(topic, message)`` from the start of ``topics`` until ``done()`` or the timeout,
    then for ``settle_ms`` more (late alerts, duplicates). No consumer group is involved."""
    consumer = group_free_consumer(s)
    try:
        deadline = time.monotonic() + timeout_s
        parts: list[TopicPartition] = []
        while time.monotonic() < deadline:
            known = {t: consumer.partitions_for_topic(t) for t in topics}
            if all(known.values()):
                parts = [TopicPartition(t, p) for t, ps in known.items() for p in sorted(ps)]
                break
            time.sleep(0.2)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        settle = False
        while True:
            if not settle and (done() or time.monotonic() > deadline):
                settle = True
                deadline = time.monotonic() + settle_ms / 1000
            elif settle and time.monotonic() > deadline:
                return
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    yield tp.topic, orjson.loads(r.value)
    finally:
        consumer.close()
