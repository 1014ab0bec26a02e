"""Where the daemon's time goes at full load: a py-spy flame graph (docs/flamegraph.svg, and
docs/flamegraph-<backend>.svg for every other backend) and the profile section of
docs/benchmarks.md (top functions by own time, and the time per streamae module and client library).

    .venv/bin/python bench/flamegraph.py [--quick]

The daemon (`python -m streamae serve`, pinned to one core) works through a preloaded
backlog; py-spy attaches once it logs `serving` and samples it (100 Hz, every thread, idle
waits left out) until the group's commits cover every input. Percentages are of the samples
taken, i.e. of the time some thread of the daemon was running Python (or a call out of it:
ONNX Runtime, orjson, a socket send).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from common import ROOT, LocalBroker, cpu_seconds, load_average, machine, write_section

TOPIC = "backlog"

#: Owners of time: the innermost frame (leaf outwards) in one of these packages takes a
#: frame's own time; calls out of them (ONNX Runtime, numpy, orjson) count for their caller.
LIBRARIES = {"kafka/": "kafka-python", "confluent_kafka/": "confluent-kafka", "streamae/": ""}
#: Native frames (py-spy --native) that take their own time whatever called them.
NATIVE = {
    "gc_collect": "garbage collection (CPython gc, native)",
    "librdkafka": "librdkafka (native)",
    "cimpl.": "librdkafka (native)",
    "onnxruntime": "ONNX Runtime (native)",
    "_multiarray_umath": "numpy (native)",
    "orjson": "orjson (native)",
}


@dataclass
class Frame:
    name: str  # "function (file:line)"
    depth: int
    x: int
    w: int
    children: list[Frame] = field(default_factory=list)
    parent: Frame | None = None

    @property
    def own(self) -> int:
        return self.w - sum(c.w for c in self.children)

    @property
    def function(self) -> str:
        return re.sub(r":\d+\)$", ")", self.name)


_FRAME = re.compile(
    r"<g><title>(.*?) \([\d,]+ samples?, [\d.]+%\)</title>"
    r'<rect [^>]*?y="(\d+)"[^>]*?fg:x="(\d+)" fg:w="(\d+)"'
)


def parse_flamegraph(svg: str) -> list[Frame]:
    """Every frame of a py-spy (inferno) flame graph, linked to its parent by x-containment."""
    raw = [(html.unescape(t), int(y), int(x), int(w)) for t, y, x, w in _FRAME.findall(svg)]
    ys = sorted({y for _, y, _, _ in raw})
    step = (ys[1] - ys[0]) if len(ys) > 1 else 1
    frames = sorted((Frame(t, (y - ys[0]) // step, x, w) for t, y, x, w in raw), key=lambda f: (f.depth, f.x))
    by_depth: dict[int, list[Frame]] = defaultdict(list)
    for f in frames:
        by_depth[f.depth].append(f)
    for f in frames:
        for p in by_depth.get(f.depth - 1, []):
            if p.x <= f.x < p.x + p.w:
                f.parent = p
                p.children.append(f)
                break
    return frames


def _file(name: str) -> str:
    m = re.search(r"\(([^()]*?)(?::\d+)?\)$", name)
    return m[1] if m else ""


def stage_of(f: Frame | None) -> str:
    """Who a frame's own time belongs to: a native library or the garbage collector anywhere on
    its stack (``NATIVE``), else the innermost streamae module (``serving/loop.py``) or Kafka
    client library."""
    native = f  # the native frames between the leaf and the first Python frame
    while native is not None and not _file(native.name).endswith(".py"):
        for part, label in NATIVE.items():
            if part in native.name:
                return label
        native = native.parent
    while f is not None:
        path = _file(f.name)
        for prefix, label in LIBRARIES.items():
            if path.startswith(prefix):
                if prefix == "kafka/":  # which part of the client: consumer, producer, conn, ...
                    return f"{label} {path.split('/')[1].removesuffix('.py')}"
                return label or path.removeprefix(prefix)
        f = f.parent
    return "other (interpreter, threads' own frames)"


def _thread(f: Frame) -> str:
    while f.parent is not None and f.parent.name != "all":
        f = f.parent
    return f.name


def summarise(frames: list[Frame]) -> dict[str, Any]:
    roots = [f for f in frames if f.parent is None]
    total = sum(f.w for f in roots if f.name == "all") or sum(f.w for f in roots)
    own: dict[str, int] = defaultdict(int)
    stages: dict[str, int] = defaultdict(int)
    main: dict[str, int] = defaultdict(int)  # the loop's own thread
    threads: dict[str, int] = defaultdict(int)
    for f in frames:
        if f.name == "all":
            continue
        if f.own:
            own[f.function] += f.own
            stages[stage_of(f)] += f.own
            if "MainThread" in _thread(f):
                main[stage_of(f)] += f.own
        if f.parent is not None and f.parent.name == "all":
            threads[f.name] += f.w
    return {
        "samples": total,
        "main_samples": sum(main.values()),
        "top": sorted(own.items(), key=lambda kv: -kv[1])[:20],
        "stages": sorted(stages.items(), key=lambda kv: -kv[1]),
        "main": sorted(main.items(), key=lambda kv: -kv[1]),
        "threads": sorted(threads.items(), key=lambda kv: -kv[1]),
    }


def profile_backend(
    bs: str, ends: dict[int, int], bundle: Path, backend: str, svg: Path, cpus: Any, rate: int
) -> dict[str, Any]:
    run = harness.Run(bs, TOPIC)
    run.create()
    commits = harness.Commits(bs)
    d = harness.Daemon(run, bundle, backend, cpus=cpus)
    spy = None
    try:
        while d.ready is None:
            d.tick()
            time.sleep(0.02)
        attached, cpu0 = time.monotonic(), cpu_seconds(d.pid) or 0.0
        spy = subprocess.Popen(
            [
                shutil.which("py-spy") or "py-spy",
                "record",
                "--pid",
                str(d.pid),
                "--rate",
                str(rate),
                "--threads",
                "--native",  # garbage collection, numpy, ONNX Runtime and librdkafka show up
                "--function",
                "--format",
                "flamegraph",
                "--output",
                str(svg),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        elapsed = harness.wait_until_scored([d], commits, run, {p: e - 1 for p, e in ends.items()}, 1800)
        wall = time.monotonic() - attached
        cpu = (cpu_seconds(d.pid) or 0.0) - cpu0  # while profiled
        spy.send_signal(signal.SIGINT)
        log = spy.communicate(timeout=120)[0].decode(errors="replace")
        if not svg.exists():
            raise RuntimeError(f"py-spy wrote no flame graph:\n{log[-2000:]}")
        n = sum(ends.values())
        result = summarise(parse_flamegraph(svg.read_text()))
        result.update(
            {
                "backend": backend,
                "readings": n,
                "msgs_per_s": n / elapsed,
                "profiled_s": wall,
                "cpu_s": cpu,
                "py_spy": log.strip().splitlines()[-1] if log.strip() else "",
            }
        )
        return result
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        d.stop()
        commits.close()
        run.drop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="150 readings per key instead of 600")
    p.add_argument("--cpus", default="0")
    p.add_argument("--rate", type=int, default=50, help="py-spy samples per second (native stacks are slow)")
    p.add_argument("--no-write", action="store_true", help="flame graphs under .bench/ only; docs untouched")
    a = p.parse_args()
    cpus = {int(c) for c in a.cpus.split(",") if c} or None
    per_key = 150 if a.quick else 600
    when = datetime.now(timezone.utc)
    load_before = load_average()
    bundle = harness.bundle()
    out_dir = (ROOT / ".bench") if a.no_write else (ROOT / "docs")
    results = []
    with LocalBroker("profile") as broker:
        harness.preload(broker.bootstrap, TOPIC, harness.messages(1000, per_key, seed=1))
        ends = harness.end_offsets(broker.bootstrap, TOPIC)
        for backend in harness.BACKENDS:
            name = "flamegraph.svg" if backend == "kafka-python" else f"flamegraph-{backend}.svg"
            try:
                r = profile_backend(broker.bootstrap, ends, bundle, backend, out_dir / name, cpus, a.rate)
            except Exception as exc:
                print(f"{backend}: {exc}", flush=True)
                continue
            r["svg"] = name
            results.append(r)
            print(report(r), flush=True)
    if not a.no_write and results:
        write_section("profile", section(a, results, when, load_before, per_key))
    return 0


def report(r: dict[str, Any]) -> str:
    s = r["samples"] or 1
    lines = [f"{r['backend']}: {r['msgs_per_s']:,.0f} readings/s under py-spy, {s} samples"]
    lines += [f"  {n / s:6.1%}  {name}" for name, n in r["stages"]]
    lines += [f"  {n / s:6.1%}  {name}" for name, n in r["top"][:12]]
    return "\n".join(lines)


def _short(name: str) -> str:
    """``function (path)`` with the path cut to the package part."""
    name = re.sub(r"\(/.*?/site-packages/", "(", name)
    name = re.sub(r"\(/.*?/(streamae/)", r"(\1", name)
    return name.replace("|", "/")


def section(
    a: argparse.Namespace, results: list[dict[str, Any]], when: datetime, load: str, per_key: int
) -> str:
    lines = [
        "## Profile of the daemon at full load",
        "",
        f"Written by `bench/flamegraph.py` on {when:%Y-%m-%d %H:%M} UTC. Command: "
        f"`.venv/bin/python bench/flamegraph.py{' --quick' if a.quick else ''}`.",
        "",
        f"Machine: {machine()}; the daemon pinned to CPU {a.cpus}. Load average before / after: "
        f"{load} / {load_average()} (other sessions ran tests meanwhile).",
        "",
        f"A backlog of {1000 * per_key:,} readings (1,000 keys, 5 features, 4 partitions, one reading per "
        f"message), dense bundle, window 30, default settings. py-spy {a.rate} Hz, "
        "`--threads --native --function`, "
        "attached once the daemon logs `serving`, stopped when the commits cover every input. "
        "Percentages are of all samples (every thread). With `--native` a thread blocked in a "
        "native call (a socket wait in libc) can count as running, so kafka-python's network "
        "threads are overstated; the MainThread table is the loop's critical path. Garbage "
        "collection runs inside whatever Python frame allocated when it fell due, and shows as "
        "`gc_collect_main` under that frame. Native stack sampling stops the daemon for every "
        "sample: it runs slower under the profiler and its CPU per reading is inflated (compare "
        "the readings/s with bench/throughput.py); read the shares, not the absolute µs.",
        "",
    ]
    for r in results:
        s = r["samples"] or 1
        us = 1e6 * r["cpu_s"] / r["readings"]  # the daemon's CPU time per reading, all threads
        lines += [
            f"### {r['backend']} — [{r['svg']}]({r['svg']})",
            "",
            f"{r['msgs_per_s']:,.0f} readings/s under the profiler; {r['samples']:,} samples over "
            f"{r['profiled_s']:.0f} s; daemon CPU {r['cpu_s']:.0f} s while profiled "
            f"({us:.1f} µs per reading; *µs per reading* splits it by the shares).",
            "",
            "| module (own time of the innermost streamae module or client library on the stack) "
            "| share | µs per reading |",
            "|---|---:|---:|",
            *[f"| {name} | {n / s:.1%} | {n / s * us:.1f} |" for name, n in r["stages"]],
            "",
            "| the loop's thread (MainThread) alone, by module | share of its samples |",
            "|---|---:|",
            *[f"| {name} | {n / (r['main_samples'] or 1):.1%} |" for name, n in r["main"][:12]],
            "",
            "| top functions by own time | share | µs per reading |",
            "|---|---:|---:|",
            *[f"| `{_short(name)}` | {n / s:.1%} | {n / s * us:.1f} |" for name, n in r["top"][:15]],
            "",
            "| thread | share |",
            "|---|---:|",
            *[f"| {_short(name)} | {n / s:.1%} |" for name, n in r["threads"][:6]],
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
