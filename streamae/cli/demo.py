"""``streamae demo``: simulate → train → serve → stream anomalies → print alerts, on a broker."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers, settings

HOURS_PER_ANOMALY = 8.0  # the longest simulated anomaly with its margins fits in 5 hours
MIN_HOURS = HOURS_PER_ANOMALY
# (entities, hours of stream, days of history) when not given
DEFAULTS = {"sensors": (4, 24.0, 3.0), "transactions": (40, 240.0, 20.0)}


def register(sub: Subparsers) -> None:
    d = sub.add_parser(
        "demo",
        help="end-to-end demo on a running broker",
        description="Simulate history, train, start the daemon, stream data with "
        "anomalies, print alerts as they arrive and a summary. --kind sensors (the default): "
        "machines with five correlated sensors, 3 days of history, one anomaly per machine every "
        f"{HOURS_PER_ANOMALY:g} hours. --kind transactions: card accounts with habits, 20 days of "
        "history, then one fraud per account (new country, new category, burst of tiny payments, "
        "amount spike, night ATM abroad); alerts name the account and the field.",
    )
    d.add_argument("--kind", choices=tuple(DEFAULTS), default="sensors", help="what to simulate")
    d.add_argument("--bootstrap", help="Kafka bootstrap servers")
    d.add_argument("--workdir", type=Path, default=Path(".demo/run"), help="where files and plots go")
    d.add_argument(
        "--entities", type=int, help="machines or accounts (keys); default 4 machines, 40 accounts"
    )
    d.add_argument(
        "--hours",
        type=float,
        help=f"hours of stream to score; default 24 (sensors, at least {MIN_HOURS:g}) or 240 (transactions)",
    )
    d.add_argument("--epochs", type=int, default=40, help="training epochs (at most)")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.demo import scenarios
    from streamae.demo.run import run_demo
    from streamae.serving.clients.admin import wait_for_broker

    entities, hours, history_days = DEFAULTS[args.kind]
    entities, hours = args.entities or entities, args.hours or hours
    if args.kind == "sensors":
        if hours < MIN_HOURS:
            raise SystemExit(
                f"streamae demo: --hours {hours:g}: at least {MIN_HOURS:g} (room for one anomaly)"
            )
        scenario = scenarios.sensors(entities, history_days, hours, int(hours // HOURS_PER_ANOMALY), seed=7)
    else:
        if hours < 24:
            raise SystemExit(f"streamae demo --kind transactions: --hours {hours:g}: at least 24")
        scenario = scenarios.transactions(entities, history_days, hours / 24, seed=7)
    s = settings(args)
    wait_for_broker(s.kafka)
    summary = run_demo(s, args.workdir, scenario, epochs=args.epochs)
    return 0 if summary.windows_scored > 0 else 1
