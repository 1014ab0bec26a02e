"""Shared bits of the benchmarks: timing, a trained bundle, result rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    if (out / "manifest.json").exists():
        return out
    from streamae.config import TrainSettings
    from streamae.simulate import DAY_S, simulate
    from streamae.training import fit

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


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``FIELD=VALUE`` pairs from the command line (pydantic converts the values)."""
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise SystemExit(f"--set expects FIELD=VALUE, got {bad}")
    return dict(p.split("=", 1) for p in pairs)
