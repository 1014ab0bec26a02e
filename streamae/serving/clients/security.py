"""TLS and SASL settings as each Kafka client library names them.

One mapping from :class:`~streamae.core.config.KafkaSettings` per library, so that every
transport (and the admin client) connects the same way. Secrets are unwrapped here and
nowhere else: the dicts returned hold them in clear, so never log them (log
``KafkaSettings`` instead, whose secrets print masked).
"""

from __future__ import annotations

from typing import Any

from streamae.core.config import KafkaSettings


def _secret(k: KafkaSettings, name: str) -> str | None:
    value = getattr(k, name)
    return None if value is None else str(value.get_secret_value())


def kafka_python_security(k: KafkaSettings) -> dict[str, Any]:
    """kafka-python's keyword arguments (``KafkaConsumer``, ``KafkaProducer``, admin).

    >>> kafka_python_security(KafkaSettings())
    {'security_protocol': 'PLAINTEXT'}
    """
    cfg: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        cfg["ssl_check_hostname"] = k.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):  # the same names there
            if (path := getattr(k, name)) is not None:
                cfg[name] = str(path)
        if k.ssl_password is not None:
            cfg["ssl_password"] = _secret(k, "ssl_password")
    if k.sasl_mechanism:
        # kafka-python takes SCRAM credentials under the PLAIN names too
        cfg["sasl_mechanism"] = k.sasl_mechanism
        cfg["sasl_plain_username"] = k.sasl_username
        cfg["sasl_plain_password"] = _secret(k, "sasl_password")
    return cfg


def librdkafka_security(k: KafkaSettings) -> dict[str, str]:
    """librdkafka's configuration properties (confluent-kafka ``Consumer``, ``Producer``,
    ``AdminClient``).

    >>> librdkafka_security(KafkaSettings())
    {'security.protocol': 'PLAINTEXT'}
    """
    cfg: dict[str, str] = {"security.protocol": k.security_protocol}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        # librdkafka verifies the broker's hostname only when asked to ("https")
        cfg["ssl.endpoint.identification.algorithm"] = "https" if k.ssl_check_hostname else "none"
        for ours, theirs in (
            ("ssl_cafile", "ssl.ca.location"),
            ("ssl_certfile", "ssl.certificate.location"),
            ("ssl_keyfile", "ssl.key.location"),
        ):
            if (path := getattr(k, ours)) is not None:
                cfg[theirs] = str(path)
        if (password := _secret(k, "ssl_password")) is not None:
            cfg["ssl.key.password"] = password
    if k.sasl_mechanism:
        cfg["sasl.mechanisms"] = k.sasl_mechanism
        cfg["sasl.username"] = k.sasl_username or ""
        cfg["sasl.password"] = _secret(k, "sasl_password") or ""
    return cfg
