"""The one place a daemon is put together from settings: ``streamae serve``, the demo and the
tests all call :func:`build_daemon`, so none of them can run a daemon that lacks a part the
others have (the hot reloader, the health probe)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from streamae.core.config import ConfigError, Settings
from streamae.core.scoring import Scorer
from streamae.serving.health import metrics
from streamae.serving.health.probe import TransportProbe
from streamae.serving.health.server import DaemonHealth
from streamae.serving.loop import Daemon
from streamae.serving.reload import ModelReloader
from streamae.serving.shadow import Shadow
from streamae.serving.transport import Transport


def build_daemon(
    settings: Settings,
    *,
    create_topics: bool = False,
    health: DaemonHealth | None = None,
    transport: Transport | None = None,
    scorer: Scorer | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Daemon:
    """A daemon serving ``settings.model.bundle``: its scorer, the broker waited for (and the
    topics created with ``create_topics``), the transport behind a :class:`TransportProbe`
    that ``health`` reads, and a :class:`ModelReloader` when ``model.reload_interval_s`` is set.

    ``transport``, ``scorer`` and ``clock`` replace the broker connection, the bundle load
    and the time source for the in-memory unit tests; everything else is built as for a user.
    """
    scorer = scorer or Scorer.load(required_bundle(settings), settings)
    manifest = scorer.manifest
    metrics.model_loaded(manifest.model_version, manifest.variant)
    if health is not None:
        health.model_version = manifest.model_version
    if transport is None:
        from streamae.serving.clients.admin import ensure_daemon_topics, ensure_topics, wait_for_broker
        from streamae.serving.clients.backends import open_transport

        wait_for_broker(settings.kafka)
        if create_topics:
            ensure_daemon_topics(settings.kafka)
            if settings.model.shadow_bundle is not None:
                ensure_topics(settings.kafka, [settings.kafka.shadow_topic])
        transport = open_transport(settings)
    probe = TransportProbe(transport, stall_s=settings.stall_s, clock=clock)
    reloader = (
        ModelReloader(required_bundle(settings), settings, scorer, clock=clock)
        if settings.model.reload_interval_s
        else None
    )
    daemon = Daemon(settings, scorer, probe, clock, reloader, Shadow.load(settings, scorer))
    if health is not None:
        health.attach(probe, daemon)
    return daemon


def required_bundle(settings: Settings) -> Path:
    """The bundle location the daemon serves (and its reloader follows)."""
    if settings.model.bundle is None:
        raise ConfigError(
            "invalid configuration:\n  STREAMAE_MODEL__BUNDLE: a bundle is required (or pass --bundle)"
        )
    return settings.model.bundle
