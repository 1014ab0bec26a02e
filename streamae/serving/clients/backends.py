"""Which Kafka client library serves: one transport module per library, chosen by name.

A backend module implements ``transport.Transport`` (``open_transport``). Adding a client
library is one new module and one line in :data:`BACKENDS`; nothing else in serving imports
a client library. Administration (waiting for the broker, creating topics) is not on the hot
path and always uses kafka-python (``clients.admin``), whichever library serves.
"""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from streamae.core.config import ConfigError, KafkaSettings, Settings
from streamae.serving.transport import Transport

BACKENDS = {  # STREAMAE_KAFKA__BACKEND -> module
    "kafka-python": "streamae.serving.clients.kafka_python",
    "confluent-kafka": "streamae.serving.clients.confluent",  # the default
}


class Backend(Protocol):
    """What a backend module provides."""

    def open_transport(self, k: KafkaSettings) -> Transport: ...


def backend(name: str) -> Backend:
    """The backend module called ``name`` (imported on first use); a :class:`ConfigError`
    naming the package to install when its client library is missing."""
    try:
        return cast(Backend, importlib.import_module(BACKENDS[name]))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"invalid configuration:\n  STREAMAE_KAFKA__BACKEND: '{name}' needs the package "
            f"'{exc.name}' (pip install {exc.name}, or reinstall streamae with its dependencies)"
        ) from None


def open_transport(settings: Settings) -> Transport:
    """A transport for ``settings`` on the configured client library."""
    return backend(settings.kafka.backend).open_transport(settings.kafka)
