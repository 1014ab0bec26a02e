"""``streamae evaluate``: detection quality of a bundle on a labelled readings file."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers, positive_int
from streamae.core.config import load_settings


def register(sub: Subparsers) -> None:
    e = sub.add_parser(
        "evaluate",
        help="measure detection quality on a labelled readings file",
        description="Score DATA (same format as training history, plus a 'label' column: 0 normal, "
        ">0 anomalous) with BUNDLE. Each window takes the label of its last reading; the first "
        "window-1 readings of a key complete no window and are not counted. The configured alert "
        "policy (STREAMAE_ALERTS__*) runs over the scores. Point, point-adjusted, event and ranking "
        "metrics per series (key) and pooled go to OUT_DIR/report.json, a score plot per key to "
        "OUT_DIR/<key>.png, and a summary table to stdout.",
    )
    e.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory")
    e.add_argument(
        "data", type=Path, metavar="DATA", help="labelled readings, .csv or .parquet, with a 'label' column"
    )
    e.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="where report.json and plots go"
    )
    e.add_argument(
        "--top-features",
        type=positive_int,
        default=3,
        metavar="K",
        help="features named per window (default: 3)",
    )
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.evaluation.report import REPORT_JSON, evaluate_file, format_table

    report = evaluate_file(args.bundle, args.data, args.output, load_settings(), args.top_features)
    t = report.threshold
    print(
        f"{report.variant} ({report.model_version}) on {report.data}: {report.rows_scored} windows, "
        f"threshold {t['value']:.6g} ({t['method']}), {report.alerts_opened} alerts opened"
    )
    print(format_table(report))
    print("PA: point-adjusted; FAR/MAR: false/missed alarm rate per window; delay: mean detection delay")
    print(f"report → {args.output / REPORT_JSON}, plots → {args.output}/<key>.png")
    return 0
