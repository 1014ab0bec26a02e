"""``streamae demo``: simulate → train → serve → stream anomalies → print alerts, on a broker."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers, settings

HOURS_PER_ANOMALY = 8.0  # the longest simulated anomaly with its margins fits in 5 hours
MIN_HOURS = HOURS_PER_ANOMALY


def register(sub: Subparsers) -> None:
    d = sub.add_parser(
        "demo",
        help="end-to-end demo on a running broker",
        description="Simulate history, train, start the daemon, stream data with "
        "anomalies, print alerts as they arrive and a summary.",
    )
    d.add_argument("--bootstrap", help="Kafka bootstrap servers")
    d.add_argument("--workdir", type=Path, default=Path(".demo/run"), help="where files and plots go")
    d.add_argument("--entities", type=int, default=4, help="machines (keys)")
    d.add_argument(
        "--hours",
        type=float,
        default=24.0,
        help=f"hours of stream to score, at least {MIN_HOURS:g} (one injected anomaly per machine "
        f"every {HOURS_PER_ANOMALY:g} hours)",
    )
    d.add_argument("--epochs", type=int, default=40, help="training epochs (at most)")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.demo.run import run_demo
    from streamae.serving.clients.admin import wait_for_broker

    if args.hours < MIN_HOURS:
        raise SystemExit(
            f"streamae demo: --hours {args.hours:g}: at least {MIN_HOURS:g} (room for one anomaly)"
        )
    s = settings(args)
    wait_for_broker(s.kafka)
    summary = run_demo(
        s,
        args.workdir,
        entities=args.entities,
        stream_hours=args.hours,
        anomalies_per_entity=int(args.hours // HOURS_PER_ANOMALY),
        epochs=args.epochs,
    )
    return 0 if summary.windows_scored > 0 else 1
