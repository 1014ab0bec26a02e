"""``streamae simulate``: a multi-sensor or card-transaction stream with labelled anomalies, to a
file or Kafka."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers, settings


def register(sub: Subparsers) -> None:
    m = sub.add_parser(
        "simulate",
        help="generate a multi-sensor or card-transaction stream with labelled anomalies",
        description="--kind sensors (the default): machines with correlated sensors and a daily "
        "cycle, with spikes, level shifts, drifts, stuck sensors and broken correlations injected. "
        "--kind transactions: card accounts with habits (home country, categories, amounts, "
        "hours), with frauds odd only for their account injected (new country, new category, "
        "a burst of tiny online payments, an amount spike, a night ATM withdrawal abroad). "
        "Write a file (-o) and/or publish to Kafka (--kafka).",
    )
    m.add_argument("--kind", choices=("sensors", "transactions"), default="sensors", help="what to simulate")
    m.add_argument("-o", "--output", type=Path, help="write readings to .csv or .parquet")
    m.add_argument("--kafka", action="store_true", help="publish to STREAMAE_KAFKA__INPUT_TOPIC")
    m.add_argument("--bootstrap", help="Kafka bootstrap servers")
    m.add_argument("--entities", type=int, default=4, help="machines or accounts (keys)")
    m.add_argument("--hours", type=float, default=24.0, help="hours of readings")
    m.add_argument("--interval", type=float, default=60.0, help="seconds between readings (sensors)")
    m.add_argument("--anomalies", type=int, default=2, help="anomalies (frauds) per entity (0: normal only)")
    m.add_argument("--start", type=float, default=1_767_225_600.0, help="epoch seconds")
    m.add_argument("--seed", type=int, default=0, help="random seed")
    m.add_argument("--per-message", type=int, default=1, help="readings per Kafka message")
    m.add_argument("--anomalies-out", type=Path, help="write the injected anomalies as CSV")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.readings import write_table
    from streamae.demo.simulate import simulate, to_messages
    from streamae.demo.transactions import simulate_transactions

    if args.kind == "transactions":
        sim = simulate_transactions(
            args.entities, args.hours / 24, args.anomalies, start=args.start, seed=args.seed
        )
    else:
        sim = simulate(
            args.entities, args.hours * 3600, args.interval, args.anomalies, start=args.start, seed=args.seed
        )
    frame = sim.frame.drop(columns=["label", "anomaly_type"]) if args.anomalies == 0 else sim.frame
    if args.output:
        write_table(frame, args.output)
        print(f"{len(frame)} readings, {len(sim.anomalies)} anomalies → {args.output}")
    if args.kafka:
        from streamae.serving.clients.admin import ensure_topics, publish, wait_for_broker

        k = settings(args).kafka
        wait_for_broker(k)
        ensure_topics(k, [k.input_topic])
        n = publish(k, to_messages(frame, args.per_message))
        print(f"{len(frame)} readings in {n} messages → {k.bootstrap_servers} {k.input_topic}")
    if args.anomalies_out:
        sim.anomalies_frame().to_csv(args.anomalies_out, index=False)
    return 0
