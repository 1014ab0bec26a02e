"""TLS and SASL settings reach both client libraries under their own names."""

from __future__ import annotations

import pytest

from streamae.core.config import KafkaSettings
from streamae.serving.clients.kafka_python import client_configs
from streamae.serving.clients.security import kafka_python_security, librdkafka_security


@pytest.fixture
def pem(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    return tmp_path


def full(pem, **changes) -> KafkaSettings:
    return KafkaSettings(
        **{
            "security_protocol": "SASL_SSL",
            "ssl_cafile": pem / "ca.pem",
            "ssl_certfile": pem / "client.pem",
            "ssl_keyfile": pem / "client.key",
            "ssl_password": "key-pass",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "streamae",
            "sasl_password": "sasl-pass",
            **changes,
        }
    )


def test_plaintext_adds_nothing():
    assert kafka_python_security(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}
    assert librdkafka_security(KafkaSettings()) == {"security.protocol": "PLAINTEXT"}


def test_kafka_python_names(pem):
    assert kafka_python_security(full(pem)) == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(pem / "ca.pem"),
        "ssl_certfile": str(pem / "client.pem"),
        "ssl_keyfile": str(pem / "client.key"),
        "ssl_password": "key-pass",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "streamae",
        "sasl_plain_password": "sasl-pass",
    }
    tls_only = KafkaSettings(security_protocol="SSL", ssl_cafile=pem / "ca.pem", ssl_check_hostname=False)
    assert kafka_python_security(tls_only) == {
        "security_protocol": "SSL",
        "ssl_check_hostname": False,
        "ssl_cafile": str(pem / "ca.pem"),
    }


def test_librdkafka_names(pem):
    assert librdkafka_security(full(pem)) == {
        "security.protocol": "SASL_SSL",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(pem / "ca.pem"),
        "ssl.certificate.location": str(pem / "client.pem"),
        "ssl.key.location": str(pem / "client.key"),
        "ssl.key.password": "key-pass",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "streamae",
        "sasl.password": "sasl-pass",
    }
    no_check = librdkafka_security(full(pem, ssl_check_hostname=False))
    assert no_check["ssl.endpoint.identification.algorithm"] == "none"
    sasl_plain = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"
    )
    assert librdkafka_security(sasl_plain) == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
    }


def test_kafka_python_accepts_every_key(pem):
    """kafka-python refuses unknown keyword configs: every key we pass must be one it knows."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    cfg = client_configs(full(pem))
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        assert set(cfg) <= set(client.DEFAULT_CONFIG), (
            client.__name__,
            set(cfg) - set(client.DEFAULT_CONFIG),
        )
    sasl = KafkaConsumer.DEFAULT_CONFIG  # and the mechanisms we allow are its own
    assert "sasl_mechanism" in sasl


def test_librdkafka_accepts_every_property():
    """confluent-kafka (where installed) validates property names when a client is built."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    k = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
    )
    producer = confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:1", **librdkafka_security(k)})
    producer.flush(0)
    with pytest.raises(confluent_kafka.KafkaException):
        confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:1", "sasl.mechanismz": "PLAIN"})


def test_settings_repr_masks_the_secrets(pem):
    text = repr(full(pem)) + str(full(pem)) + full(pem).model_dump_json()
    assert "key-pass" not in text and "sasl-pass" not in text
