"""``STREAMAE_KAFKA__*``: the broker, the topics, the consumer group, delivery and commits,
and the connection's security."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    model_validator,
)


class Section(BaseModel):
    """A settings section: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: str = "streamae.readings"
    scores_topic: str = "streamae.scores"
    alerts_topic: str = "streamae.alerts"
    dlq_topic: str = "streamae.dlq"
    shadow_topic: str = Field(
        "streamae.shadow", description="scores of STREAMAE_MODEL__SHADOW_BUNDLE (never alerts)"
    )
    state_topic: str = Field(
        "streamae.alert-state",
        description="compacted; as many partitions as the input topic; holds alert state",
    )
    backend: Literal["kafka-python", "confluent-kafka"] = Field(
        "confluent-kafka",
        description="Kafka client library that serves (serving/clients/backends.py): confluent-kafka "
        "(librdkafka, in C: several times the throughput) or kafka-python (pure Python: no native "
        "library to vet, debuggable in Python)",
    )
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="exactly_once: outputs, alert state and offsets commit in one transaction; "
        "downstream readers must read with isolation level read_committed",
    )
    transactional_id: str | None = Field(
        None,
        description="exactly_once: this member's transactional id, stable across its restarts and "
        "unique among live members (default: '<group_id>-<hostname>-<n>', n the lowest slot no "
        "live member of the group on this host holds)",
    )
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none",
        description="producer compression; kafka-python needs the codec's package for all but gzip",
    )
    retry_backoff_ms: int = Field(
        500, ge=1, description="first wait after a failed delivery or commit; doubles on each failure"
    )
    retry_backoff_max_ms: int = Field(30000, ge=1, description="...up to this")
    group_id: str = "streamae"
    client_id: str = "streamae"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = Field(2000, ge=1)
    session_timeout_ms: int = Field(45000, ge=1000)
    max_poll_interval_ms: int = Field(300000, ge=1000)
    # Outputs are sent as their micro-batch is scored, so the linger adds to their latency; a
    # micro-batch's records are produced in one burst, so a short one still fills batches.
    linger_ms: int = Field(5, ge=0, description="producer linger: how long a send may wait to fill a batch")
    batch_size: int = Field(1_048_576, ge=1024, description="producer batch bytes per partition")
    request_timeout_ms: int = Field(30000, ge=1000, description="also bounds the wait for acks")
    delivery_timeout_ms: int | None = Field(
        None,
        ge=1000,
        description="how long a sent record may wait for its acknowledgement, retries included, "
        "before it fails and its micro-batch is sent again; unset: 60 s, or request_timeout_ms + "
        "linger_ms (the least both clients accept) when that is longer",
    )
    reconnect_backoff_max_ms: int = Field(
        1000,
        ge=100,  # librdkafka refuses less than its reconnect.backoff.ms (100)
        description="longest wait between two attempts to reach a broker that went away; the "
        "clients' own (30 s on kafka-python) is added to the recovery after every outage",
    )
    commit_interval_ms: int | None = Field(
        None,
        ge=0,
        description="wait for acknowledgements, save alert state and commit at the first micro-batch "
        "boundary this long after the first uncommitted record; 0: every micro-batch; unset: 1000 "
        "at-least-once (outputs leave at once anyway), 100 exactly-once (outputs become visible at "
        "the commit: this bounds their latency)",
    )
    commit_every: int = Field(0, ge=0, description="...or once this many records were processed (0: off)")
    # security (docs/operations.md "Security"); secrets are SecretStr: masked wherever printed
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: FilePath | None = Field(
        None, description="PEM CA bundle that signs the brokers' certificates"
    )
    ssl_certfile: FilePath | None = Field(None, description="PEM client certificate (mutual TLS)")
    ssl_keyfile: FilePath | None = Field(None, description="PEM private key of the client certificate")
    ssl_password: SecretStr | None = Field(None, description="password of an encrypted ssl_keyfile")
    ssl_check_hostname: bool = Field(True, description="verify that the broker's certificate names it")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="with security_protocol SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @property
    def commit_interval(self) -> int:
        """The commit interval in ms: ``commit_interval_ms``, or the default of the delivery mode."""
        if self.commit_interval_ms is not None:
            return self.commit_interval_ms
        return 100 if self.delivery == "exactly_once" else 1000

    @property
    def delivery_timeout(self) -> int:
        """The producers' delivery timeout in ms, one value for both clients (their own defaults
        are 120 s and 300 s, or librdkafka's transaction timeout, 60 s): an open transaction whose
        records the client does not deliver holds every partition of the member that long."""
        return self.delivery_timeout_ms or max(60_000, self.request_timeout_ms + self.linger_ms)

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        # named as the variables a user sets: this section only exists as STREAMAE_KAFKA__*
        var = "STREAMAE_KAFKA__"
        least = self.request_timeout_ms + self.linger_ms
        if self.delivery_timeout_ms is not None and self.delivery_timeout_ms < least:
            raise ValueError(
                f"{var}DELIVERY_TIMEOUT_MS={self.delivery_timeout_ms} must be at least "
                f"{var}REQUEST_TIMEOUT_MS + {var}LINGER_MS ({least})"
            )
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password is not None):
            raise ValueError(
                f"{var}SECURITY_PROTOCOL={self.security_protocol} needs {var}SASL_MECHANISM, "
                f"{var}SASL_USERNAME and {var}SASL_PASSWORD"
            )
        if self.sasl_mechanism and not sasl:
            raise ValueError(f"{var}SASL_MECHANISM needs {var}SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        ssl_set = [
            f for f in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password") if getattr(self, f)
        ]
        if ssl_set and not tls:
            names = ", ".join(var + f.upper() for f in ssl_set)
            raise ValueError(f"{names} need {var}SECURITY_PROTOCOL SSL or SASL_SSL")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError(f"{var}SSL_KEYFILE needs {var}SSL_CERTFILE")
        return self
