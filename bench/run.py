"""Throughput benchmarks; writes the performance section of docs/benchmarks.md.

taskset -c 0 .venv/bin/python bench/run.py        (one core for the Python side)
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone

import decode
import pipeline
import scoring
from common import write_section

COMMAND = "taskset -c 0 .venv/bin/python bench/run.py"


def main() -> None:
    started = time.perf_counter()
    results = decode.run() + scoring.run() + pipeline.run()
    lines = [
        "## Throughput",
        "",
        f"Written by `bench/run.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; every "
        "number below was measured in that one run (ratios are within the run).",
        "",
        f"Command: `{COMMAND}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores visible, Python "
        f"{platform.python_version()}, CPU affinity {sorted(os.sched_getaffinity(0))}; the Kafka "
        "broker (JVM) runs outside the affinity mask. Run time "
        f"{time.perf_counter() - started:.0f} s.",
        "",
        "| benchmark | result | unit | note |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {r.name} | {r.value:,.0f} | {r.unit} | {r.note} |" for r in results]
    lines += [
        "",
        "Reading the numbers:",
        "",
        "- *decode* turns Kafka records into a columnar batch (keys, times, a float32 matrix) "
        "and checks every value; the baseline only parses with stdlib `json` and builds rows.",
        "- *score* is `Scorer.score` (standardise, ONNX Runtime, per-feature error) on windows "
        "of 30 × 5, one thread. Batching is what makes the model cheap.",
        "- *daemon end to end* starts with a backlog already on the broker and stops when "
        "every window's score is acknowledged and committed. It is bounded by kafka-python's "
        "per-record cost (consuming and producing a record each take tens of µs of Python), "
        "not by decoding or the model: one score message is published per window.",
        "",
        "GPU: no device was lent to the session that wrote this file; the CUDA provider path "
        "is used only where `CUDAExecutionProvider` loads.",
        "",
    ]
    write_section("performance", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
