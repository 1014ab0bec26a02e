"""``streamae retrain``: the retraining job: history from the input topic (or a file), trained
as ``train`` trains, registered, and promoted when the gate passes. Exit 0: promoted; 3: the
current version stays; 1: an error."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamae.cli.common import Subparsers, settings
from streamae.cli.train import add_train_flags, train_settings

if TYPE_CHECKING:
    import pandas as pd

    from streamae.core.config import KafkaSettings, Settings

KEPT = 3


def register(sub: Subparsers) -> None:
    r = sub.add_parser(
        "retrain",
        help="train the next model version from the stream; promote it when it is not worse",
        description="Build the training history from the input topic (the last --days, or "
        "--since/--until; offsets looked up by timestamp, no consumer group) or from --history, "
        "leave out readings within --alert-margin-s of an alert (read from the alerts topic, or "
        "--labels), train as `streamae train` does (automatic selection unless --variant), and "
        "register the bundle as the next version. The gate then judges it against the current "
        "version on the most recent --holdout of the history, which it did not train on (false "
        "alarms on its normal readings, F1 on injected faults), and promotes it when it is not "
        "worse. Exit status: 0 promoted, 3 kept the current version, 1 error.",
    )
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--days", type=float, help="the input topic's last DAYS days (broker time)")
    src.add_argument("--since", type=float, help="the input topic from this epoch second (broker time)")
    src.add_argument("--history", type=Path, help="a history file (.csv or .parquet) instead of the topic")
    r.add_argument("--until", type=float, help="with --since: up to this epoch second (default: now)")
    r.add_argument(
        "--labels", type=Path, help="CSV of key,start,end (epoch s) to leave out, instead of the alerts topic"
    )
    r.add_argument(
        "--alert-margin-s", type=float, default=600.0, help="event seconds left out around an alert"
    )
    r.add_argument(
        "--keep-alerted",
        action="store_true",
        help="train on readings near alerts too (after a change of normal, old models alert on the new one)",
    )
    r.add_argument(
        "--registry", type=Path, help="registry directory (default: STREAMAE_REGISTRY, or ./registry)"
    )
    r.add_argument(
        "--holdout", type=float, default=0.2, help="most recent share of the history the gate judges on"
    )
    r.add_argument(
        "--force", action="store_true", help="promote even when the gate refuses (recorded as forced)"
    )
    r.add_argument("--bootstrap", help="Kafka bootstrap servers")
    add_train_flags(r)
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.bundle import BundleError
    from streamae.core.config import load_trainer_settings
    from streamae.core.readings import DataError
    from streamae.core.registry import Registry, RegistryError
    from streamae.training.retrain import retrain

    s = settings(args)
    cfg = train_settings(args)
    if "variant" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"variant": "auto"})
    registry = Registry(args.registry or load_trainer_settings().registry)
    try:
        frame, source = _history(args, s)
        out = retrain(
            frame, source, registry, cfg, s, force=args.force, holdout=args.holdout, progress=not args.quiet
        )
    except (DataError, RegistryError, BundleError) as exc:
        print(f"streamae: error: {exc}", file=sys.stderr)
        return 1
    v = out.record.version
    print(f"registered {v} ({out.record.selection or out.record.variant}) from {source}")
    print(f"gate: {'passed' if out.verdict.promote else 'refused'}: {out.verdict.reason}")
    print(f"current: {registry.current()}" + ("" if out.promoted else f" (kept; {v} not promoted)"))
    return 0 if out.promoted else KEPT


def _history(args: argparse.Namespace, s: Settings) -> tuple[pd.DataFrame, str]:
    import pandas as pd

    from streamae.core.readings import DataError, read_table
    from streamae.training.retrain import label_alerts, messages_frame

    if args.history:
        frame, source, alerts = read_table(args.history), str(args.history), []
    else:
        from streamae.core.progress_bar import Progress
        from streamae.serving.clients.history import read_range

        k = s.kafka
        since = time.time() - args.days * 86400 if args.days is not None else args.since
        batches = Progress(
            read_range(k, k.input_topic, since, args.until),
            f"reading {k.input_topic}",
            "batch",
            not args.quiet,
        )
        frame, bad = messages_frame((r.key, r.value) for batch in batches for r in batch)
        batches.close()
        source = f"{k.input_topic} since {since:.0f}" + (f" until {args.until:.0f}" if args.until else "")
        if bad:
            print(f"{source}: {bad} malformed readings left out (dead letters)")
        alerts = [] if args.labels or args.keep_alerted else _alerts(k, since)
    if args.labels:
        spans = pd.read_csv(args.labels)
        alerts = [
            {"event": e, "alert_id": i, "key": str(row.key), "start": float(row.start), "end": float(row.end)}
            for i, row in enumerate(spans.itertuples())
            for e in ("open", "close")
        ]
    if len(frame) == 0:
        raise DataError(f"{source}: no readings to train on")
    return label_alerts(frame, alerts, args.alert_margin_s), source


def _alerts(k: KafkaSettings, since: float) -> list[dict[str, Any]]:
    import orjson

    from streamae.serving.clients.history import read_range
    from streamae.serving.errors import TransportError

    try:
        return [orjson.loads(r.value) for batch in read_range(k, k.alerts_topic, since) for r in batch]
    except TransportError:  # no alerts topic yet: nothing to leave out
        return []
