"""``streamae inspect``: a bundle's manifest in words, its training curve, scores and latent space."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers


def register(sub: Subparsers) -> None:
    i = sub.add_parser(
        "inspect",
        help="describe a bundle; plot its training curve, scores and latent space",
        description="Print BUNDLE's manifest readably (variant, features, windowing, scaler, "
        "threshold and its calibration, metrics, training, versions, extra files) and plot its "
        "training curve. With DATA, also plot a histogram of the window scores against the "
        "threshold and a 2-D view of the windows' latent codes (the code itself when it is 2-D, "
        "else its PCA projection); labelled windows are marked when DATA has a 'label' column.",
    )
    i.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory")
    i.add_argument(
        "data",
        type=Path,
        nargs="?",
        metavar="DATA",
        help="optional readings file, .csv or .parquet (label column optional)",
    )
    i.add_argument(
        "-o", "--output", type=Path, metavar="OUT_DIR", help="where the plots go (default: BUNDLE/inspect)"
    )
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.evaluation.inspect import inspect_bundle

    found = inspect_bundle(args.bundle, args.data, args.output)
    print(found.text)
    for note in found.notes:
        print(f"note: {note}")
    for name, path in found.plots.items():
        print(f"{name} → {path}")
    return 0
