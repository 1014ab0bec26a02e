"""Batched ONNX scoring of a dense autoencoder (window 30 × 5 features) on the CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from common import Result, best_rate, train_bundle

from streamae.core.bundle import load_bundle
from streamae.core.scoring import Scorer


def run() -> list[Result]:
    bundle = load_bundle(train_bundle(Path(tempfile.gettempdir()) / "streamae-bench-bundle"))
    m = bundle.manifest
    rng = np.random.default_rng(0)
    mean = np.asarray(m.scaler.mean, dtype=np.float32)
    x = (mean + rng.normal(0, 1, (65_536, m.window, len(m.features)))).astype(np.float32)
    out = []
    one = None
    for batch in (1, 64, 4096):
        scorer = Scorer(bundle, ["CPUExecutionProvider"], intra_op_threads=1, max_batch=batch)
        n = 2_000 if batch == 1 else len(x)
        rate = best_rate(lambda: len(scorer.score(x[:n])), repeats=3)  # noqa: B023
        one = one or rate
        out.append(
            Result(
                f"score: ONNX dense AE, batch {batch}, 1 thread",
                rate,
                "windows/s",
                f"{rate / one:.0f}x batch 1",
            )
        )
    return out
