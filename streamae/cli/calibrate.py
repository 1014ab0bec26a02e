"""``streamae calibrate``: a new threshold for an existing bundle, without retraining."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers
from streamae.cli.train import add_train_flags, train_settings
from streamae.core.config import ConfigError, TrainSettings, load_settings
from streamae.core.manifest import Threshold

# method -> (its parameter's TrainSettings name, that parameter's name in manifest.threshold.params)
METHOD_PARAMETER = {
    "quantile": ("quantile", "quantile"),
    "sigma": ("sigma_k", "k"),
    "pot": ("target_far", "target_far"),
}


def register(sub: Subparsers) -> None:
    c = sub.add_parser(
        "calibrate",
        help="set a bundle's threshold anew from normal readings, without retraining",
        description="Score every window of NORMAL (readings known to be normal, in the format of "
        "training history; windows touching a row whose 'label' is > 0 are left out) through the "
        "bundle's scorer, exactly as `streamae score` and the daemon score them, and set the alert "
        "threshold from those scores. Only the manifest changes: the new threshold with its method, "
        "parameters, smoothing and window count, the calibration score metrics, a model_version "
        "ending in +recal<UTC time>, and training.recalibration (when, from what, the previous "
        "threshold). The bundle is rewritten atomically, in place unless -o names another folder. "
        "Flags left out keep the bundle's current method, parameter and smoothing.",
    )
    c.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory")
    c.add_argument("normal", type=Path, metavar="NORMAL", help="normal readings, .csv or .parquet")
    c.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT_BUNDLE",
        help="write the recalibrated bundle here (default: rewrite BUNDLE in place)",
    )
    add_train_flags(c, ("threshold", "ewma_alpha"), keeps="the bundle's")
    add_train_flags(
        c,
        ("quantile", "sigma_k", "target_far"),
        keeps="the bundle's when it uses this method, else {default}",
    )
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.bundle import load_bundle
    from streamae.core.readings import read_table
    from streamae.training.calibration import ThresholdRule
    from streamae.training.recalibrate import recalibrate

    bundle = load_bundle(args.bundle)
    old = bundle.manifest.threshold
    cfg = rule_settings(args, old)
    frame = read_table(args.normal)
    out = args.output or args.bundle
    new = recalibrate(
        bundle, frame, ThresholdRule.of(cfg), cfg.ewma_alpha, out, str(args.normal), load_settings()
    ).manifest
    t = new.threshold
    print(
        f"bundle {out}: threshold {old.value:.6g} ({old.method}) → {t.value:.6g} ({t.method} "
        f"{', '.join(f'{k}={v:.4g}' for k, v in t.params.items())}) on {t.calibration_windows} windows "
        f"of {args.normal}, smoothing alpha {t.ewma_alpha:g}, model_version {new.model_version}"
    )
    return 0


def rule_settings(args: argparse.Namespace, current: Threshold) -> TrainSettings:
    """The given flags on top of the bundle's ``current`` rule, checked as ``streamae train``
    checks them; a parameter flag of a method other than the one in force is an error."""
    base: dict[str, object] = {"threshold": current.method, "ewma_alpha": current.ewma_alpha}
    name, param = METHOD_PARAMETER[current.method]
    if param in current.params:
        base[name] = current.params[param]
    cfg = train_settings(args, base)
    for method, (name, _) in METHOD_PARAMETER.items():
        if hasattr(args, name) and method != cfg.threshold:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} is a parameter of --threshold {method}, but the method is {cfg.threshold}: "
                f"add --threshold {method} or leave {flag} out"
            )
    return cfg
