"""What Python's cyclic garbage collector costs the daemon: the same backlog with the
default collector thresholds and with raised ones, alternating, on each backend. Prints a
table (writes nothing): CPU seconds of the daemon, steady readings/s, and the collections
of each generation with the wall time they took.

    .venv/bin/python bench/gc_cost.py [--per-key 200] [--threshold 50000,50,1000]

The daemon is not changed: a ``sitecustomize`` module (written under .bench/) that only
this benchmark puts on the daemon's PYTHONPATH times every collection (``gc.callbacks``)
and, for the raised runs, calls ``gc.set_threshold`` at interpreter start.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from common import ROOT, LocalBroker, load_average, machine

PROBE = """
import atexit, gc, os, time
_start, _acc = {}, {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
def _timed(phase, info):
    g = info["generation"]
    if phase == "start":
        _start[g] = time.perf_counter()
    elif g in _start:
        _acc[g][0] += 1
        _acc[g][1] += time.perf_counter() - _start.pop(g)
if os.environ.get("GC_COST_OUT"):
    gc.callbacks.append(_timed)
    atexit.register(lambda: open(os.environ["GC_COST_OUT"], "w").write(repr(_acc)))
    if os.environ.get("GC_COST_THRESHOLD"):
        gc.set_threshold(*map(int, os.environ["GC_COST_THRESHOLD"].split(",")))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-key", type=int, default=200, help="readings per key (1,000 keys)")
    p.add_argument("--threshold", default="50000,50,1000", help="gc.set_threshold of the raised runs")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cpus", default="0")
    a = p.parse_args()
    cpus = {int(c) for c in a.cpus.split(",") if c} or None
    probe = ROOT / ".bench" / "gc_cost"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / "sitecustomize.py").write_text(PROBE)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")]))
    print(f"{machine()}; load {load_average()}")
    print(
        "| backend | gc thresholds | steady readings/s | daemon CPU s | gen0 / gen1 / gen2 collections (s) |"
    )
    print("|---|---|---:|---:|---|")
    with LocalBroker("gc") as broker:
        harness.preload(broker.bootstrap, "r", harness.messages(1000, a.per_key, seed=1))
        ends = harness.end_offsets(broker.bootstrap, "r")
        bundle = harness.bundle()
        for _ in range(a.repeats):
            for backend in harness.BACKENDS:
                for threshold in ("", a.threshold):
                    out = probe / "collections.txt"
                    out.unlink(missing_ok=True)
                    os.environ["GC_COST_OUT"] = str(out)
                    os.environ["GC_COST_THRESHOLD"] = threshold
                    r = harness.backlog_run(broker.bootstrap, "r", ends, bundle, backend, cpus=[cpus])
                    gens = ast.literal_eval(out.read_text()) if out.exists() else {}
                    cols = " / ".join(f"{n} ({s:.1f})" for n, s in gens.values())
                    print(
                        f"| {backend} | {threshold or 'default (700, 10, 10)'} "
                        f"| {r['steady_msgs_per_s']:,.0f} | {r['cpu_s']:.1f} | {cols} |",
                        flush=True,
                    )
    print(f"load {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
