"""``streamae score``: score a readings file offline through the serving core."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers, positive_int
from streamae.core.config import load_settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "score",
        help="score a readings file offline (backfill, evaluation)",
        description="Score every window of INPUT (same format as training "
        "history) with BUNDLE; one row per window, stamped with the key and "
        "timestamp of its last reading, in the columns of the score message.",
    )
    s.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory")
    s.add_argument("input", type=Path, metavar="INPUT", help="readings, .csv or .parquet")
    s.add_argument("-o", "--output", type=Path, required=True, metavar="SCORES.csv", help=".csv or .parquet")
    s.add_argument(
        "--top-features", type=positive_int, default=3, metavar="K", help="features named per window"
    )
    s.add_argument("--plot", type=Path, metavar="PNG", help="also plot score vs time")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.offline import score_frame
    from streamae.core.readings import read_table, write_table
    from streamae.core.scoring import Scorer

    settings = load_settings()
    scorer = Scorer.load(args.bundle, settings)
    frame = read_table(args.input)
    # windows cut as the daemon cuts them (no window spans a silence longer than its TTL)
    scores = score_frame(frame, scorer, args.input.name, args.top_features, settings.windows.idle_ttl_s)
    write_table(scores, args.output)
    print(f"{len(scores)} windows scored, {int(scores['is_anomaly'].sum())} over threshold → {args.output}")
    if args.plot:
        from streamae.evaluation.plots import label_spans, plot_scores

        labels = label_spans(frame) if "label" in frame.columns else None
        print(f"plot → {plot_scores(scores, args.plot, labels)}")
    return 0
