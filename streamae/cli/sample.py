"""``streamae sample``: synthetic normal readings from a variational bundle's decoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers, positive_int
from streamae.core.config import load_settings


def register(sub: Subparsers) -> None:
    a = sub.add_parser(
        "sample",
        help="generate synthetic normal readings from a variational bundle",
        description="Draw N codes from the prior N(0, I), decode them with the bundle's "
        "decoder.onnx (variational bundles only) and unscale them. Sampled window i becomes "
        "as many readings as the bundle's window, of key 'sample-<i>', at START + j*INTERVAL, "
        "with the bundle's feature columns, so the file can be scored or trained on like any history.",
    )
    a.add_argument("bundle", type=Path, metavar="BUNDLE", help="variational model bundle (has decoder.onnx)")
    a.add_argument("-n", type=positive_int, required=True, metavar="N", help="windows to sample")
    a.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.csv", help="readings file, .csv or .parquet"
    )
    a.add_argument("--seed", type=int, default=0, help="random seed of the codes (default: 0)")
    a.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between readings (default: 60)",
    )
    a.add_argument(
        "--start",
        type=float,
        default=1_767_225_600.0,
        metavar="EPOCH",
        help="epoch seconds of each window's first reading (default: 1767225600, 2026-01-01 UTC)",
    )
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.bundle import load_bundle
    from streamae.core.readings import write_table
    from streamae.training.sampling import samples_frame

    bundle = load_bundle(args.bundle)
    frame = samples_frame(
        bundle, args.n, args.seed, args.interval, args.start, load_settings().model.providers
    )
    write_table(frame, args.output)
    m = bundle.manifest
    print(
        f"{len(frame)} readings ({args.n} sampled windows of {m.window}, "
        f"{len(m.features)} features) → {args.output}"
    )
    return 0
