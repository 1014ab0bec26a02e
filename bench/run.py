"""Run every benchmark and write docs/benchmarks.md.

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
from common import ROOT

COMMAND = "taskset -c 0 .venv/bin/python bench/run.py"


def main() -> None:
    started = time.perf_counter()
    results = decode.run() + scoring.run() + pipeline.run()
    lines = [
        "# Benchmarks",
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
        "GPU: no device was lent to the session that wrote this file; the CUDA "
        "provider path is exercised only when `CUDAExecutionProvider` is available.",
        "",
    ]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
