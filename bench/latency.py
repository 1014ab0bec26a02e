"""Latency and scale of the daemon; writes the latency section of docs/benchmarks.md and the
plots docs/latency.png (throughput and p99 over the batching and commit settings) and
docs/memory.png (resident memory over time).

    .venv/bin/python bench/latency.py [--quick]

On a local broker (fresh port, data under .bench/), with the dense bundle of
bench/throughput.py:

1. the default daemon's sustained rate on a preloaded backlog; every paced run below offers
   half of it (a producer process stamping each reading with its send time, see harness.py);
2. a grid over ``STREAMAE_BATCH__MAX_WINDOWS``, ``STREAMAE_BATCH__MAX_WAIT_MS`` and
   ``STREAMAE_KAFKA__COMMIT_INTERVAL_MS``: backlog throughput and latency percentiles at
   that fixed offered rate;
3. two daemon processes in one group over the four partitions (one core each) against one;
4. resident memory (VmRSS) while a backlog of 100,000 keys streams through;
5. resident memory while the outputs stall for 30 s under the paced load: the broker paused
   (SIGSTOP: input and output stop), and the daemon's producer throttled to 1 KiB/s by a
   client quota (output alone stops; the consumer is not throttled).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from common import ROOT, LocalBroker, load_average, machine, write_section

TOPIC = "backlog"
BASE_BACKEND = "kafka-python"  # of the grid, scale and memory runs (as before: comparable)
MANY_KEYS_TOPIC = "many-keys"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="a smaller grid, shorter runs, 20,000 keys for memory"
    )
    p.add_argument("--cpus", default="0", help="core of the (first) daemon")
    p.add_argument("--memory-keys", type=int, help="keys of the memory run (default 100,000; --quick 20,000)")
    p.add_argument("--stall-s", type=float, default=30.0, help="how long the outputs stall")
    p.add_argument(
        "--only", nargs="*", default=[], help="parts to run: defaults grid scale memory stall (default all)"
    )
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    a = p.parse_args()
    a.cpu_set = {int(c) for c in a.cpus.split(",") if c} or None
    everything = set(range(os.cpu_count() or 1))
    a.other_cpus = (everything - (a.cpu_set or set())) or None
    a.backlog_per_key = 60 if a.quick else 200  # × 1,000 keys
    a.paced_s = 15.0 if a.quick else 30.0
    a.memory_keys = a.memory_keys or (20_000 if a.quick else 100_000)
    a.memory_per_key = 35
    a.only = set(a.only or ["defaults", "grid", "scale", "memory", "stall"])
    return a


def grid(quick: bool) -> list[dict[str, int]]:
    """(max_windows, max_wait_ms, commit_interval_ms) points."""
    if quick:
        points = [(w, t, 0) for w in (256, 4096) for t in (10, 200)]
        return [dict(zip(("windows", "wait", "commit"), p)) for p in [*points, (4096, 200, 1000)]]
    points = [(w, t, 0) for w in (64, 512, 4096) for t in (10, 50, 200)]
    points += [(4096, t, c) for c in (100, 1000) for t in (10, 200)]
    return [dict(zip(("windows", "wait", "commit"), p)) for p in points]


def defaults(
    bs: str, ends: dict[int, int], bundle: Any, base: dict[str, Any], a: argparse.Namespace
) -> list[dict[str, Any]]:
    """The default settings on each backend in both delivery modes, at half that backend's
    own sustained rate (at-least-once, backlog)."""
    rows = []
    for backend in harness.BACKENDS:
        b = (
            base
            if backend == BASE_BACKEND
            else harness.backlog_run(bs, TOPIC, ends, bundle, backend, cpus=[a.cpu_set])
        )
        rate = b["steady_msgs_per_s"] / 2
        for delivery in ("at_least_once", "exactly_once"):
            warm = harness.warmup_s(rate, 1000)
            extra = {"STREAMAE_KAFKA__DELIVERY": delivery}
            lat = harness.paced_run(
                bs,
                bundle,
                backend,
                rate,
                warm + a.paced_s,
                warm,
                extra=extra,
                cpus=a.cpu_set,
                producer_cpus=a.other_cpus,
            )
            keep = (
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "max_ms",
                "sent_per_s",
                "commits",
                "commit_mean_ms",
                "error",
            )
            rows.append(
                {"backend": backend, "delivery": delivery, "rate": rate, **{k: lat.get(k) for k in keep}}
            )
            print(
                f"  {backend} {delivery} at {rate:,.0f}/s: p99 {rows[-1].get('p99_ms') or 0:,.0f} ms",
                flush=True,
            )
    return rows


def env(point: dict[str, int]) -> dict[str, str]:
    return {
        "STREAMAE_BATCH__MAX_WINDOWS": str(point["windows"]),
        "STREAMAE_BATCH__MAX_WAIT_MS": str(point["wait"]),
        "STREAMAE_KAFKA__COMMIT_INTERVAL_MS": str(point["commit"]),
    }


def main() -> int:
    a = parse_args()
    started = time.perf_counter()
    when = datetime.now(timezone.utc)
    load_before = load_average()
    bundle = harness.bundle()
    out: dict[str, Any] = {"defaults": [], "grid": [], "scale": [], "memory": {}, "stall": []}
    with LocalBroker("latency") as broker:
        bs = broker.bootstrap
        harness.preload(bs, TOPIC, harness.messages(1000, a.backlog_per_key, seed=1))
        ends = harness.end_offsets(bs, TOPIC)
        base = harness.backlog_run(bs, TOPIC, ends, bundle, BASE_BACKEND, cpus=[a.cpu_set])
        rate = base["steady_msgs_per_s"] / 2
        out["default"] = base
        out["rate"] = rate
        print(
            f"default: {base['msgs_per_s']:,.0f}/s ({base['steady_msgs_per_s']:,.0f} steady); "
            f"offering {rate:,.0f}/s",
            flush=True,
        )
        if "defaults" in a.only:
            out["defaults"] = defaults(bs, ends, bundle, base, a)
        if "grid" in a.only:
            for point in grid(a.quick):
                r = {**point}
                try:
                    b = harness.backlog_run(
                        bs, TOPIC, ends, bundle, "kafka-python", extra=env(point), cpus=[a.cpu_set]
                    )
                    r["msgs_per_s"], r["steady_msgs_per_s"] = b["msgs_per_s"], b["steady_msgs_per_s"]
                except Exception as exc:
                    r["error"] = str(exc)[-300:]
                warm = harness.warmup_s(rate, 1000)
                lat = harness.paced_run(
                    bs,
                    bundle,
                    "kafka-python",
                    rate,
                    warm + a.paced_s,
                    warm,
                    extra=env(point),
                    cpus=a.cpu_set,
                    producer_cpus=a.other_cpus,
                )
                r.update(
                    {
                        k: lat.get(k)
                        for k in (
                            *("p50_ms", "p95_ms", "p99_ms", "max_ms", "sent_per_s", "drain_s", "error"),
                            *("commits", "commit_mean_ms", "flushes", "flush_mean_ms"),
                        )
                    }
                )
                out["grid"].append(r)
                print(
                    f"  {point}: {r.get('steady_msgs_per_s') or 0:,.0f}/s steady, "
                    f"p99 {r.get('p99_ms') or 0:,.0f} ms",
                    flush=True,
                )
        if "scale" in a.only:
            everything = sorted(range(os.cpu_count() or 1))
            cores = [{c} for c in everything[:2]] if len(everything) > 1 else [None]
            for _ in range(1 if a.quick else 2):
                for procs in (1, 2):
                    try:
                        r = harness.backlog_run(
                            bs, TOPIC, ends, bundle, "kafka-python", processes=procs, cpus=cores[:procs]
                        )
                    except Exception as exc:
                        r = {"error": str(exc)[-300:]}
                    out["scale"].append({"processes": procs, **r})
                    print(f"  {procs} process(es): {r.get('msgs_per_s', 0):,.0f}/s", flush=True)
        if "memory" in a.only:
            n, secs = harness.preload(
                bs,
                MANY_KEYS_TOPIC,
                harness.messages(a.memory_keys, a.memory_per_key, seed=2),
            )
            print(f"  preloaded {n:,} readings of {a.memory_keys:,} keys in {secs:.0f} s", flush=True)
            many = harness.end_offsets(bs, MANY_KEYS_TOPIC)
            out["memory"] = memory_run(bs, many, bundle, a)
            print(f"  memory: {out['memory'].get('rss_end_mib')} MiB at the end", flush=True)
        if "stall" in a.only:
            for backend in harness.BACKENDS:
                for how in ("broker", "quota"):
                    at = max(20.0, harness.warmup_s(rate, 1000) + 10)
                    stall = {"at_s": at, "for_s": a.stall_s, "how": how, "pid": broker.pid()}
                    r = harness.paced_run(
                        bs,
                        bundle,
                        backend,
                        rate,
                        duration_s=stall["at_s"] + a.stall_s + 30,
                        warmup_s=harness.warmup_s(rate, 1000),
                        cpus=a.cpu_set,
                        producer_cpus=a.other_cpus,
                        stall=stall,
                    )
                    out["stall"].append(
                        {"backend": backend, "how": how, "for_s": a.stall_s, **stall_summary(r, stall)}
                    )
                    print(f"  stall {backend} {how}: {out['stall'][-1]['verdict']}", flush=True)
    out["seconds"] = time.perf_counter() - started
    if not a.no_write:
        plots(out)
        write_section("latency", section(a, out, when, load_before))
    summary = {
        "offered_msgs_per_s": round(rate),
        "defaults": out["defaults"],
        "grid": [{k: v for k, v in g.items() if k != "error"} for g in out["grid"]],
        "scale": [
            {k: s.get(k) for k in ("processes", "msgs_per_s", "steady_msgs_per_s")} for s in out["scale"]
        ],
        "memory": {k: v for k, v in out["memory"].items() if k != "rss"},
        "stall": [{k: v for k, v in s.items() if k != "rss"} for s in out["stall"]],
    }
    print(json.dumps(summary, default=float))
    return 0


def memory_run(bs: str, ends: dict[int, int], bundle: Path, a: argparse.Namespace) -> dict[str, Any]:
    """A backlog of many keys: RSS over time and where it settles."""
    run = harness.Run(bs, MANY_KEYS_TOPIC)
    run.create()
    commits = harness.Commits(bs)
    d = harness.Daemon(run, bundle, "kafka-python", cpus=a.cpu_set)
    try:
        elapsed = harness.wait_until_scored(
            [d], commits, run, {p: e - 1 for p, e in ends.items()}, 3600, every_s=0.5
        )
        d.tick()
        ready = d.ready or 0.0
        serving = [r for t, r in d.rss if t >= ready]
        return {
            "keys": a.memory_keys,
            "readings": sum(ends.values()),
            "msgs_per_s": sum(ends.values()) / elapsed,
            "rss_ready_mib": serving[0] if serving else None,
            "rss_peak_mib": max(serving) if serving else None,
            "rss_end_mib": serving[-1] if serving else None,
            "rss": d.rss,
        }
    except Exception as exc:
        return {"keys": a.memory_keys, "error": str(exc)[-500:], "rss": d.rss}
    finally:
        d.stop()
        commits.close()
        run.drop()


def stall_summary(r: dict[str, Any], stall: dict[str, Any]) -> dict[str, Any]:
    """RSS during the stall and after it (catching up), against the median of the 10 s before."""
    rss = r.get("rss", [])
    t0 = (r.get("load_at_s") or 0.0) + stall["at_s"]  # the stall's start, on the daemon's clock
    t1 = t0 + stall["for_s"]
    before = [m for t, m in rss if t0 - 10 <= t < t0]
    during = [m for t, m in rss if t0 <= t < t1]
    after = [m for t, m in rss if t >= t1]
    base = statistics.median(before) if before else None
    peak_during = max(during) if during else None
    peak_after = max(after) if after else None
    change = (peak_during / base - 1) if base and peak_during else None
    change_after = (peak_after / base - 1) if base and peak_after else None
    alive = "error" not in r or bool(r.get("alive"))
    if change is None:
        verdict = "no samples"
    else:
        verdict = f"{'flat' if abs(change) <= 0.10 else 'NOT flat'} during the stall ({change:+.0%})"
        if change_after is not None:
            verdict += f"; {change_after:+.0%} while catching up after it"
    if "error" in r:
        how = "then stuck (alive, no progress)" if alive else "then the daemon exited"
        verdict += f"; {how}: " + r["error"].strip().splitlines()[-1][:160]
    return {
        "rss_before_mib": base,
        "rss_peak_mib": peak_during,
        "rss_peak_after_mib": peak_after,
        "change": change,
        "change_after": change_after,
        "survived": alive,
        "p99_ms": r.get("p99_ms"),
        "max_ms": r.get("max_ms"),
        "verdict": verdict,
        "rss": rss,
        "stall_at_s": t0,
        "what": (r.get("stall") or [""])[0],
    }


def plots(out: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = [p for p in out["grid"] if p.get("steady_msgs_per_s")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for w in sorted({p["windows"] for p in g}):
        pts = sorted((p for p in g if p["windows"] == w and p["commit"] == 0), key=lambda p: p["wait"])
        if pts:
            axes[0].plot(
                [p["wait"] for p in pts],
                [p["steady_msgs_per_s"] for p in pts],
                "o-",
                label=f"max_windows {w}",
            )
            axes[1].plot([p["wait"] for p in pts], [p["p99_ms"] for p in pts], "o-", label=f"max_windows {w}")
    for ax, title in (
        (axes[0], "backlog throughput, commit_interval 0"),
        (axes[1], f"p99 at {out['rate']:,.0f} readings/s, commit_interval 0"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("STREAMAE_BATCH__MAX_WAIT_MS")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("readings/s (steady)")
    axes[1].set_ylabel("ms")
    axes[1].set_yscale("log")
    for wait in sorted({p["wait"] for p in g if p["windows"] == 4096}):
        pts = sorted((p for p in g if p["windows"] == 4096 and p["wait"] == wait), key=lambda p: p["commit"])
        if len({p["commit"] for p in pts}) > 1:
            axes[2].plot(
                [max(p["commit"], 1) for p in pts],
                [p["p99_ms"] for p in pts],
                "o-",
                label=f"p99, max_wait {wait}",
            )
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("STREAMAE_KAFKA__COMMIT_INTERVAL_MS (0 plotted at 1)")
    axes[2].set_ylabel("ms")
    axes[2].set_title("p99 over the commit interval, max_windows 4096", fontsize=10)
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "latency.png", dpi=90)
    plt.close(fig)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4))
    stall_s = 0.0
    for s in out["stall"]:
        if s["rss"]:
            t0 = s["stall_at_s"]
            ax.plot(
                [t - t0 for t, _ in s["rss"]], [m for _, m in s["rss"]], label=f"{s['backend']}: {s['how']}"
            )
            stall_s = max(stall_s, float(s.get("for_s", 0)))
    if stall_s:
        ax.axvspan(0, stall_s, color="grey", alpha=0.15, label="stall")
    ax.set_xlabel("seconds since the stall started")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(f"stalled outputs at {out['rate']:,.0f} readings/s", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    mem = out.get("memory") or {}
    if mem.get("rss"):
        ax2.plot([t for t, _ in mem["rss"]], [m for _, m in mem["rss"]])
        ax2.set_title(f"a backlog of {mem['keys']:,} keys", fontsize=10)
    ax2.set_xlabel("seconds since the daemon started")
    ax2.set_ylabel("RSS (MiB)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "memory.png", dpi=90)
    plt.close(fig)


def row(*cells: str) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def _f(v: Any, d: int = 0) -> str:
    return "" if v is None else f"{v:,.{d}f}"


def section(a: argparse.Namespace, out: dict[str, Any], when: datetime, load_before: str) -> str:
    base = out["default"]
    lines = [
        "## Latency and scale",
        "",
        f"Written by `bench/latency.py` on {when:%Y-%m-%d %H:%M} UTC in one run of "
        f"{out['seconds'] / 60:.0f} min{' (--quick)' if a.quick else ''}. Command: "
        f"`.venv/bin/python bench/latency.py{' --quick' if a.quick else ''}`.",
        "",
        f"Machine: {machine()}; the daemon pinned to CPU {a.cpus}, the broker and the paced producer "
        f"on every core. Load average before / after: {load_before} / {load_average()} (other "
        "sessions ran tests meanwhile).",
        "",
        f"Offered load: half of the default daemon's steady rate on a backlog of "
        f"{sum([base['readings']]):,} readings ({_f(base['steady_msgs_per_s'])}/s steady, "
        f"{_f(base['msgs_per_s'])}/s from process start) = **{_f(out['rate'])} readings/s** from 1,000 "
        "keys. Latency = broker append time of a window's score (scores topic with "
        "`LogAppendTime`) − the send time of its last reading (the paced producer stamps `ts` "
        "with it); windows ending before every key filled its first window are left out, then "
        f"{a.paced_s:g} s are measured.",
        "",
    ]
    if out["defaults"]:
        lines += [
            "### The default settings, both delivery modes",
            "",
            "Each backend at half its own steady rate (at-least-once, on the backlog above); nothing "
            "set but `STREAMAE_KAFKA__DELIVERY`. At-least-once, a score's latency is its broker append "
            "time (it is sent as soon as it is scored); exactly-once it is visible only once its "
            "transaction commits, so a `read_committed` follower stamps when each score became "
            "readable (commit interval 100 ms by default).",
            "",
            row(
                "backend",
                "delivery",
                "offered/s",
                "sent/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "commits",
                "commit ms",
                "note",
            ),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            *(
                row(
                    d["backend"],
                    d["delivery"],
                    _f(d["rate"]),
                    _f(d.get("sent_per_s")),
                    *(_f(d.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "commits")),
                    _f(d.get("commit_mean_ms"), 1),
                    (d.get("error") or "").strip().splitlines()[-1][:120] if d.get("error") else "",
                )
                for d in out["defaults"]
            ),
            "",
        ]
    if out["grid"]:
        lines += [
            "![throughput and p99 over the settings](latency.png)",
            "",
            row(
                "max_windows",
                "max_wait_ms",
                "commit_interval_ms",
                "backlog readings/s (steady)",
                *("p50 ms", "p95 ms", "p99 ms", "max ms", "commits", "commit ms", "micro-batch ms", "note"),
            ),
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for g in out["grid"]:
            note = g["error"].strip().splitlines()[-1][:120] if g.get("error") else ""
            lines.append(
                row(
                    *(str(g[k]) for k in ("windows", "wait", "commit")),
                    *(_f(g.get(k)) for k in ("steady_msgs_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms")),
                    *(
                        _f(g.get(k), d)
                        for k, d in (("commits", 0), ("commit_mean_ms", 1), ("flush_mean_ms", 1))
                    ),
                    note,
                )
            )
        lines += [
            "",
            "Outputs leave at commit time (publish → acknowledgements → state → commit), so a score "
            "waits for the micro-batch (`MAX_WAIT_MS`, or `MAX_WINDOWS` filled) and then for the next "
            "commit, due `COMMIT_INTERVAL_MS` after the first uncommitted record: with the default "
            "1,000 ms every latency is at least the time to that commit, and p99 ≈ commit interval + "
            "max wait + one commit's publish/ack/state/commit round. `COMMIT_INTERVAL_MS=0` publishes "
            "and commits after every micro-batch: latency then follows `MAX_WAIT_MS`, at the price of "
            "a synchronous commit and a state save per micro-batch (the throughput columns). *commits*, "
            "*commit ms* and *micro-batch ms* come from the daemon's own metrics over the paced run "
            "(`streamae_commit_seconds`: publish → acks → state → commit; `streamae_flush_seconds`: "
            "score one micro-batch and queue its outputs).",
            "",
        ]
    if out["scale"]:
        lines += [
            row(
                "daemon processes in one group (4 partitions)",
                "readings/s from start",
                "steady",
                "peak RSS MiB",
            ),
            "|---:|---:|---:|---:|",
        ]
        for s in out["scale"]:
            lines.append(
                row(
                    str(s["processes"]),
                    *(_f(s.get(k)) for k in ("msgs_per_s", "steady_msgs_per_s", "rss_peak_mib")),
                )
                + (f" failed: {s['error'][-100:]}" if s.get("error") else "")
            )
        lines += [
            "",
            "Two processes: one pinned to each of the two cores, which the broker shares; one process: "
            "CPU 0. Timed from the first process start until the group's commits cover every partition.",
            "",
        ]
    mem = out.get("memory") or {}
    if mem:
        lines += [
            "![resident memory](memory.png)",
            "",
            f"Memory with {mem['keys']:,} keys ({a.memory_per_key} readings each, one backlog): "
            + (
                f"RSS {_f(mem.get('rss_ready_mib'))} MiB when serving starts, "
                f"peak {_f(mem.get('rss_peak_mib'))} MiB, "
                f"{_f(mem.get('rss_end_mib'))} MiB at the end ({_f(mem.get('msgs_per_s'))} readings/s); the "
                f"1,000-key backlog peaked at {_f(base.get('rss_peak_mib'))} MiB."
                if "error" not in mem
                else f"failed: {mem['error'][-200:]}"
            ),
            "",
        ]
    if out["stall"]:
        lines += [
            f"Stalled outputs, at {_f(out['rate'])} readings/s offered; the stall starts max(20 s, warm-up "
            f"+ 10 s) after the load and lasts {a.stall_s:g} s; the load goes on 30 s after it:",
            "",
            row(
                "backend",
                "stall",
                "RSS before (median) MiB",
                "peak during",
                "peak after",
                "p99 ms",
                "verdict",
            ),
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for s in out["stall"]:
            lines.append(
                row(
                    s["backend"],
                    s["what"] or s["how"],
                    *(_f(s[k]) for k in ("rss_before_mib", "rss_peak_mib", "rss_peak_after_mib", "p99_ms")),
                    s["verdict"],
                )
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
