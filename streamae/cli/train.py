"""``streamae train``: fit an autoencoder on normal history and write a model bundle."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from streamae.cli.common import Subparsers
from streamae.core.config import TrainSettings, load_train_settings
from streamae.core.manifest import PostProcessing, WindowScore


def register(sub: Subparsers) -> None:
    t = sub.add_parser(
        "train",
        help="fit an autoencoder on normal history; write a model bundle",
        description="Fit an autoencoder on normal-only history (CSV or Parquet: a "
        "'timestamp' column, an optional 'key' column, numeric feature columns; a "
        "'label' column is never a feature), calibrate the threshold on held-out "
        "windows, export ONNX and write BUNDLE_DIR (model.onnx + manifest.json). "
        "Without --variant (and STREAMAE_TRAIN__VARIANT) the detector is chosen for the data: "
        "variants, window lengths and score aggregations are compared on held-out normal "
        "history with synthetic faults injected, at their calibrated thresholds, and the best "
        "is written; --search trades breadth for time, and every other flag given (--window, "
        "--feature-norm, ...) is kept fixed. `streamae inspect` lists the candidates.",
    )
    t.add_argument("history", type=Path, help="normal-only history, .csv or .parquet")
    t.add_argument("-o", "--output", type=Path, required=True, metavar="BUNDLE_DIR")
    add_train_flags(t)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.readings import read_table
    from streamae.training.fit import TRAINING_PLOT, fit

    cfg = train_settings(args)
    if "variant" not in cfg.model_fields_set:  # neither --variant nor STREAMAE_TRAIN__VARIANT
        cfg = cfg.model_copy(update={"variant": "auto"})
    frame = read_table(args.history)
    result = fit(frame, args.output, cfg, source=str(args.history), progress=not args.quiet)
    m = result.bundle.manifest
    t = m.threshold
    if m.selection is not None:
        sel = m.selection
        won = sel.candidates[sel.chosen]
        print(
            f"selected {won.settings.describe()} of {len(sel.candidates)} candidates "
            f"({sel.search} search): F1 {won.scores.f1:.3f} on {sel.faults} injected faults "
            f"(`streamae inspect {args.output}` lists them)"
        )
    for f in m.fields:
        print(f"field {f.describe()}")
    print(
        f"bundle {args.output}: {m.variant}, {len(m.features)} features {m.features}, "
        f"window {m.window}, stride {m.stride}, threshold {t.value:.6g} ({t.method} "
        f"{', '.join(f'{k}={v:.4g}' for k, v in t.params.items())}), "
        f"onnx parity {m.metrics['onnx_parity_max_abs_diff']:.1e}, "
        f"training curve {args.output / TRAINING_PLOT}"
    )
    return 0


def _sections() -> dict[str, type[BaseModel]]:
    """The train settings' nested sections (``adapt``): flags ``--adapt-half-life``, variables
    ``STREAMAE_TRAIN__ADAPT__HALF_LIFE``."""
    return {
        name: field.annotation
        for name, field in TrainSettings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def add_train_flags(t: argparse.ArgumentParser, names: Sequence[str] | None = None, keeps: str = "") -> None:
    """One flag per :class:`~streamae.core.config.TrainSettings` field (``--batch-size`` for
    ``batch_size``; ``--adapt-half-life`` for the ``adapt`` section's ``half_life``), or per
    field in ``names``; an unset flag keeps the configured value (``STREAMAE_TRAIN__*``), or
    what ``keeps`` says (``{default}``: the configured default)."""
    # the window score's and post-processing's fields, inherited and so first in model_fields,
    # after the model's own
    inherited = {*WindowScore.model_fields, *PostProcessing.model_fields}
    fields = sorted(_flag_fields(), key=lambda f: f[0] in inherited)
    for name, field in fields:
        if names is not None and name not in names:
            continue
        ann = field.annotation
        kind: dict[str, Any] = {"choices": get_args(ann)} if get_origin(ann) is Literal else {}
        if get_origin(ann) is list:
            kind = {"nargs": "+", "metavar": "COLUMN"}
        elif not kind:
            kind["type"] = int if ann in (int, int | None) else float if ann is float else str
        default = "the variant's" if field.default is None else field.get_default(call_default_factory=True)
        if name == "variant":
            default = "auto: chosen on injected faults, unless STREAMAE_TRAIN__VARIANT names one"
        default = keeps.format(default=default) if keeps else default
        t.add_argument(
            "--" + name.replace("_", "-"),
            default=argparse.SUPPRESS,
            help=f"{field.description or name.replace('_', ' ')} (default: {default})".replace("%", "%%"),
            **kind,
        )
        for old in (o for o, new in TrainSettings.renamed.items() if new == name):
            t.add_argument(
                "--" + old.replace("_", "-"), default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kind
            )


def _flag_fields() -> list[tuple[str, FieldInfo]]:
    """(flag name, field) of every setting: a nested section's fields as ``section_field``."""
    out = []
    sections = _sections()
    for name, field in TrainSettings.model_fields.items():
        if name in sections:
            out += [(f"{name}_{sub}", f) for sub, f in sections[name].model_fields.items()]
        else:
            out.append((name, field))
    return out


def train_settings(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainSettings:
    """Configured training settings with ``base`` and then the given flags on top; errors
    name the flag."""
    settings: dict[str, Any] = dict(base or {})
    names: dict[tuple[str, ...], str] = {}
    sections = _sections()
    for name in [*TrainSettings.model_fields, *TrainSettings.renamed]:
        if name in sections:
            for sub in sections[name].model_fields:
                if hasattr(args, f"{name}_{sub}"):
                    settings.setdefault(name, {})[sub] = getattr(args, f"{name}_{sub}")
                    names[("train", name, sub)] = f"--{name}-{sub}".replace("_", "-")
        elif hasattr(args, name):
            settings[name] = getattr(args, name)
            names[("train", name)] = "--" + name.replace("_", "-")
    return load_train_settings(names, **settings)
