"""Shared bits of the benchmarks: timing, a trained bundle, result rows."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from streamae.core.config import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    note: str = ""


def best_rate(fn: Callable[[], int], repeats: int = 5) -> float:
    """Items per second of ``fn`` (which returns how many items it handled), best of ``repeats``."""
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def train_bundle(out: Path, window: int = 30) -> Path:
    """A dense bundle on three days of simulated normal history (cached in ``out``)."""
    from streamae.core.bundle import BundleError, load_bundle

    try:
        load_bundle(out)
        return out
    except BundleError:  # absent, or cached by an older streamae
        pass
    from streamae.core.config import TrainSettings
    from streamae.demo.simulate import DAY_S, simulate
    from streamae.training.fit import fit

    hist = simulate(entities=4, duration_s=3 * DAY_S, anomalies_per_entity=0, seed=1)
    fit(
        hist.frame.drop(columns=["label", "anomaly_type"]),
        out,
        TrainSettings(window=window, epochs=30),
        progress=False,
    )
    return out


SHARED = ROOT.parent / "shared"
DOC = ROOT / "docs" / "benchmarks.md"


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) one benchmark's section of docs/benchmarks.md, between markers,
    so each benchmark rewrites only what it measured."""
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def detection_args(doc: str, name: str, defaults: dict[str, object]) -> argparse.Namespace:
    """Command line of a detection benchmark; ``args.settings`` = ``defaults`` + ``--set`` pairs."""
    from streamae.core.config import VARIANTS

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="series trained in parallel")
    p.add_argument("--work", type=Path, default=ROOT / ".bench" / name, help="bundles go here")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override a training setting")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    bad = [kv for kv in args.set if "=" not in kv]
    if bad:
        p.error(f"--set expects FIELD=VALUE, got {bad}")
    args.settings = {**defaults, **dict(kv.split("=", 1) for kv in args.set)}
    return args


def row_ratios(
    train: pd.DataFrame, frame: pd.DataFrame, cfg: TrainSettings, out: Path, source: str
) -> np.ndarray:
    """Train a bundle on ``train`` (one benchmark worker: one thread, quiet), score every
    window of ``frame`` and return score / threshold per row of ``frame``, by the window
    ending at that row (0 where no window ends)."""
    import torch

    from streamae.core.bundle import load_bundle
    from streamae.core.offline import score_frame
    from streamae.core.scoring import Scorer
    from streamae.training.fit import fit

    torch.set_num_threads(1)
    logging.disable(logging.INFO)
    fit(train, out, cfg, source=source, progress=False)
    scorer = Scorer(load_bundle(out), ["CPUExecutionProvider"], intra_op_threads=1)
    scores = score_frame(frame, scorer, source)
    ratios = np.zeros(len(frame))
    # offline offsets are row numbers of ``frame``
    ratios[scores["source_offset_end"].to_numpy()] = (scores["score"] / scores["threshold"]).to_numpy()
    return ratios
