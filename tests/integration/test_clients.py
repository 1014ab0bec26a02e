"""kafka-python's clients, built against the broker from the daemon's settings: the delivery,
reconnect and transaction timeouts reach them (librdkafka's: tests/unit/serving/
test_producer_config.py, where no broker is needed to build one)."""

from __future__ import annotations

import pytest

from streamae.core.config import KafkaSettings
from streamae.serving.clients.kafka_python import KafkaPythonTransport, make_producer

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("request_timeout_ms", [10_000, 90_000])
def test_kafka_python_producers_take_the_timeouts(kafka_bootstrap, request_timeout_ms):
    k = KafkaSettings(bootstrap_servers=kafka_bootstrap, request_timeout_ms=request_timeout_ms, linger_ms=100)
    producer = make_producer(k)
    try:
        # kafka-python's own defaults would be 120 s, 30 s and 60 s
        assert producer.config["delivery_timeout_ms"] == max(60_000, request_timeout_ms + 100)
        assert producer.config["reconnect_backoff_max_ms"] == 1000
        assert producer.config["transaction_timeout_ms"] == max(60_000, request_timeout_ms + 100)
    finally:
        producer.close(timeout=5)


def test_the_group_consumer_retries_a_broker_within_a_second(kafka_bootstrap, topics):
    k = KafkaSettings(bootstrap_servers=kafka_bootstrap, **topics)
    transport = KafkaPythonTransport(k)
    try:
        assert transport._consumer.config["reconnect_backoff_max_ms"] == 1000
    finally:
        transport.close()
