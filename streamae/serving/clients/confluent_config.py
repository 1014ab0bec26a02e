"""librdkafka properties of the confluent-kafka transport's clients (``confluent.py``)."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError

from streamae.core.config import KafkaSettings
from streamae.serving.clients.security import librdkafka_security

log = logging.getLogger("streamae.serving.clients.confluent")  # the transport's, as before
rdlog = logging.getLogger("streamae.librdkafka")  # librdkafka's own log lines, served by polls


def client_configs(k: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties shared by every client (TLS/SASL included: never log them)."""
    return {
        "bootstrap.servers": k.bootstrap_servers,
        "client.id": k.client_id,
        "reconnect.backoff.max.ms": k.reconnect_backoff_max_ms,
        "logger": rdlog,
        "error_cb": _log_client_error,
        **librdkafka_security(k),
    }


def producer_config(k: KafkaSettings, transactional_id: str | None = None) -> dict[str, Any]:
    """An idempotent producer (acks=all, five requests in flight without reordering or
    duplicates), transactional with an id; records time out after ``k.delivery_timeout``."""
    config: dict[str, Any] = {
        **client_configs(k),
        "enable.idempotence": True,
        "linger.ms": k.linger_ms,
        "message.timeout.ms": k.delivery_timeout,
        "batch.size": k.batch_size,
        "compression.type": k.compression_type,
        "queue.buffering.max.messages": 1_000_000,
        # no report (and no Python call) per acknowledged record: the handles ask whether
        # anything is still undelivered instead (confluent_errors.Delivery)
        "delivery.report.only.error": True,
    }
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
        # librdkafka refuses a message timeout above the transaction's (60 s by default)
        config["transaction.timeout.ms"] = max(60_000, k.delivery_timeout)
    return config


def _log_client_error(err: KafkaError) -> None:
    # broker connection errors are reported here too; the loop's backoff says what it does
    (log.error if err.fatal() else log.debug)("librdkafka: %s", err)
