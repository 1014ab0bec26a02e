"""Shared bits of the benchmarks: timing, the local broker, result rows."""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamae.core.config import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from local_kafka import free_port as free_port  # noqa: E402  (re-exported: the one free-port helper)
from local_kafka import start_broker  # noqa: E402


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


SHARED = ROOT.parent / "shared"
DOC = ROOT / "docs" / "benchmarks.md"


def write_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace (or append) one benchmark's section of ``doc`` (docs/benchmarks.md), between
    markers, so each benchmark rewrites only what it measured."""
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def detection_args(doc: str, name: str, defaults: dict[str, object]) -> argparse.Namespace:
    """Command line of a detection benchmark; ``args.settings`` = ``defaults`` + ``--set`` pairs."""
    from streamae.core.config import VARIANTS

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    # "auto": the default `streamae train`, which selects its detector without labels
    p.add_argument("--variants", nargs="+", default=[*VARIANTS, "auto"], choices=[*VARIANTS, "auto"])
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


def fit_and_score(
    train: pd.DataFrame, frame: pd.DataFrame, cfg: TrainSettings, out: Path, source: str
) -> tuple[pd.DataFrame, Any]:
    """Train a bundle on ``train`` (one benchmark worker: one thread, quiet) and score every
    window of ``frame`` through the product's path; the scores and the bundle's manifest."""
    import torch

    from streamae.core.bundle import load_bundle
    from streamae.core.offline import score_frame
    from streamae.core.scoring import Scorer
    from streamae.training.fit import fit

    torch.set_num_threads(1)
    logging.disable(logging.INFO)
    fit(train, out, cfg, source=source, progress=False)
    bundle = load_bundle(out)
    scorer = Scorer(bundle, ["CPUExecutionProvider"], intra_op_threads=1)
    return score_frame(frame, scorer, source), bundle.manifest


def per_row(frame: pd.DataFrame, scores: pd.DataFrame, column: pd.Series) -> np.ndarray:
    """``column`` of the score rows placed at the row of ``frame`` their window ends at (0
    where no window ends): offline offsets are row numbers of ``frame``."""
    out = np.zeros(len(frame))
    out[scores["source_offset_end"].to_numpy()] = column.to_numpy()
    return out


def row_ratios(
    train: pd.DataFrame, frame: pd.DataFrame, cfg: TrainSettings, out: Path, source: str
) -> np.ndarray:
    """Score / threshold per row of ``frame``, by the window ending at that row (0 where no
    window ends), from a bundle trained on ``train``."""
    scores, _ = fit_and_score(train, frame, cfg, out, source)
    return per_row(frame, scores, scores["score"] / scores["threshold"])


# -- machine, load and the local broker (throughput, latency, profile) -------------------


def machine() -> str:
    """CPU model, cores, memory and Python, for the line that says where a run was measured."""
    import platform

    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return (
        f"{model}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def load_average() -> str:
    """The 1/5/15-minute load averages, as a note on what else ran meanwhile."""
    with open("/proc/loadavg") as f:
        return ", ".join(f.read().split()[:3])


class LocalBroker:
    """A fresh single-node Kafka broker (``deploy/kafka.sh``, started by the tests' own
    starter, which retries on a port clash) with its data under ``.bench/``; stopped and its
    data removed on exit. It may use every core: it is the infrastructure, not the system
    under test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.script = ROOT / "deploy" / "kafka.sh"

    def __enter__(self) -> LocalBroker:
        everywhere = set(range(os.cpu_count() or 1))
        fresh = (ROOT / ".bench" / f"kafka-{self.name}-{os.getpid()}-{i}" for i in itertools.count())
        self.port, self.dir = start_broker(
            self.script, lambda: next(fresh), preexec=lambda: os.sched_setaffinity(0, everywhere)
        )
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._warm_producer_ids()
        return self

    def _warm_producer_ids(self) -> None:
        """Have the fresh broker hand out one idempotent producer id: its coordinator loads on
        first use (seconds, 'Coordinator load in progress'), which would stall the first
        daemon's outputs of a run and be measured as its latency."""
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        p.produce("bench.warm-up", b"x")
        if p.flush(120):
            raise RuntimeError("the fresh broker accepted no idempotent record in 120 s")

    def pid(self) -> int:
        return int((self.dir / "broker.pid").read_text())

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["bash", str(self.script), "stop", str(self.dir)], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (VmRSS), MiB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drop_section(name: str) -> None:
    """Remove one benchmark's section from docs/benchmarks.md (a benchmark that was retired)."""
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    text = DOC.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        DOC.write_text(head.rstrip() + "\n\n" + rest.split(end, 1)[1].lstrip())
