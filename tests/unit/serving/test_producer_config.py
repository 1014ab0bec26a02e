"""librdkafka's producer, built from the daemon's settings without a broker: the delivery
timeout reaches it, and a transactional one is accepted whatever the request timeout."""

import pytest
from confluent_kafka import Producer

from streamae.core.config import KafkaSettings
from streamae.serving.clients.confluent_config import producer_config


@pytest.mark.parametrize("request_timeout_ms", [10_000, 30_000, 90_000])
@pytest.mark.parametrize("transactional_id", [None, "streamae-test-0"])
def test_records_time_out_after_a_minute_or_the_request_timeout_not_librdkafkas_five_minutes(
    request_timeout_ms, transactional_id
):
    k = KafkaSettings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=request_timeout_ms, linger_ms=100)
    config = producer_config(k, transactional_id)
    assert config["message.timeout.ms"] == max(60_000, request_timeout_ms + 100)
    assert config["reconnect.backoff.max.ms"] == 1000
    Producer(config).flush(0)  # librdkafka checks the timeouts against each other here


def test_an_explicit_delivery_timeout_is_used():
    k = KafkaSettings(request_timeout_ms=10_000, delivery_timeout_ms=45_000)
    assert producer_config(k, "t")["message.timeout.ms"] == 45_000
