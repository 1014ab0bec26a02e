"""``streamae serve``: the Kafka scoring daemon."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
from pathlib import Path
from types import FrameType

from streamae.cli.common import Subparsers, settings
from streamae.core.config import ConfigError

log = logging.getLogger("streamae")


class _StopBeforeServing(BaseException):
    """A signal arrived during start-up (bundle load, broker wait): leave without serving.
    A BaseException, so no ``except Exception`` on the way up can swallow it."""


def register(sub: Subparsers) -> None:
    v = sub.add_parser(
        "serve",
        help="run the Kafka scoring daemon",
        description="Consume readings, score windows, publish scores and alerts; "
        "commits offsets only after outputs are acknowledged. SIGTERM/SIGINT drain "
        "and exit 0.",
    )
    v.add_argument("--bundle", type=Path, help="model bundle (else STREAMAE_MODEL__BUNDLE)")
    v.add_argument("--bootstrap", help="Kafka bootstrap servers (else STREAMAE_KAFKA__BOOTSTRAP_SERVERS)")
    v.add_argument(
        "--create-topics",
        action="store_true",
        help="create missing input, output and dead-letter topics, and the compacted alert-state "
        "topic (STREAMAE_KAFKA__STATE_TOPIC) with as many partitions as the input",
    )
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core import logs
    from streamae.serving.assembly import build_daemon, required_bundle
    from streamae.serving.health.server import DaemonHealth, HealthServer
    from streamae.serving.loop import Daemon

    daemon: Daemon | None = None
    server: HealthServer | None = None
    health = DaemonHealth()  # /healthz passes during start-up, /ready once serving

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        if daemon is None:
            raise _StopBeforeServing
        daemon.stop()

    # before the slow start-up, so that a SIGTERM there ends it cleanly too
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            overrides = {"model": {"bundle": args.bundle}} if args.bundle else {}
            s = settings(args, **overrides)
            required_bundle(s)
            log.info("settings: %s", s.model_dump_json(exclude={"train"}))  # secrets print masked
            if s.metrics_port:
                try:
                    server = HealthServer(health.snapshot, s.metrics_port, s.metrics_host, s.liveness_s)
                except OSError as exc:
                    where = f"cannot listen on {s.metrics_host}:{s.metrics_port}: {exc.strerror or exc}"
                    raise _invalid("STREAMAE_METRICS_PORT", where) from None
                server.start()
            daemon = build_daemon(s, create_topics=args.create_topics, health=health)
        except _StopBeforeServing:
            log.info("stopped during start-up")
            return 0
        k, reloader = s.kafka, daemon.reloader
        log.info(
            "serving %s (model %s) from %s (group %s) with %s; %s",
            s.model.bundle,
            daemon.scorer.manifest.model_version,
            k.input_topic,
            k.group_id,
            daemon.scorer.providers,
            f"hot reload every {reloader.interval_s:g} s" if reloader else "no hot reload",
        )
        settle_garbage_collector()
        daemon.run()
        return 0
    finally:
        if server is not None:
            server.close()
        logs.report_suppressed()


def settle_garbage_collector() -> None:
    """Freeze what start-up allocated and collect the young generation less often.

    The loop allocates a few short-lived objects per record (the clients' records and
    futures, decoded JSON, output bytes), none of them in reference cycles; with CPython's
    defaults their sheer number triggers a collection every 700 allocations and full ones
    that traverse every module, model and client object made at start-up: a third of the
    daemon's CPU in profiles (docs/benchmarks.md). Frozen objects are never traversed again,
    and a larger first threshold leaves cyclic garbage, of which the loop makes little,
    waiting a bit longer. Measured on this project's backlog benchmark: +45 % readings/s on
    kafka-python, +60-80 % on confluent-kafka. A process-wide choice, so made here by the
    ``serve`` command and not by the daemon class that tests run in their own process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _invalid(variable: str, why: str) -> ConfigError:
    return ConfigError(f"invalid configuration:\n  {variable}: {why}")
