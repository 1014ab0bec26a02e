"""Errors of the serving path that any transport raises (so the CLI needs no client library)."""


class DeliveryError(RuntimeError):
    """The broker did not acknowledge an output; offsets stay uncommitted."""


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answered at the configured bootstrap servers."""
