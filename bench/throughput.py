"""Throughput against the ceilings, in one run on one preloaded topic; writes the throughput
section of docs/benchmarks.md and prints one JSON line last.

    .venv/bin/python bench/throughput.py [--quick]

Starts a local broker (fresh port and data under .bench/), preloads one topic (1,000 keys,
5 features, 4 partitions; 2,000 readings per key, --quick 200), trains (or reuses) a dense
bundle with window 30 on the same simulator, then measures, alternating the repeats:

- raw: bare kafka-python consumer, no group, every partition assigned, poll until every
  record is seen; the same with librdkafka (confluent-kafka, ``consume(1000)``);
- decode: the same consumers plus streamae's ``ReadingDecoder``;
- e2e: ``python -m streamae serve`` on each backend (and each output mode) from process start
  until the group's commits say every output is acknowledged (fresh output topics and group);
- naive: one message at a time, ``json.loads``, a PyTorch forward per window, a synchronous
  produce per score (on a slice of the stream; the rate is extrapolated);
- latency: the default daemon fed at half its measured sustained rate (harness.paced_run).

The Python side (consumers, daemon, naive baseline) is pinned to one core (``--cpus``); the
broker and the paced producer may use every core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from common import LocalBroker, drop_section, load_average, machine, write_section

TOPIC = "readings"
CARDS = "transactions"  # card payments: string fields, per-account derived features


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 readings per key instead of 2,000")
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--per-key", type=int, help="readings per key (default 2000, --quick 200)")
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats of every measurement")
    p.add_argument(
        "--naive", type=int, help="readings the naive baseline is timed on (default 20000, --quick 3000)"
    )
    p.add_argument("--latency-s", type=float, help="seconds of paced load (default 40, --quick 15)")
    p.add_argument("--cpus", default="0", help="cores of the Python side (comma list; '' = unpinned)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    a = p.parse_args()
    a.per_key = a.per_key or (200 if a.quick else 2000)
    a.naive = a.naive or (3000 if a.quick else 20_000)
    a.latency_s = a.latency_s or (15.0 if a.quick else 40.0)
    a.cpu_set = {int(c) for c in a.cpus.split(",") if c} or None
    a.other_cpus = (set(range(__import__("os").cpu_count() or 1)) - (a.cpu_set or set())) or None
    return a


def measure(name: str, results: dict[str, list[dict[str, Any]]], fn: Any) -> None:
    """Run one measurement; a failure is recorded (and reported), not fatal to the run."""
    t = time.perf_counter()
    try:
        r = fn()
    except Exception as exc:  # a backend still being written, a daemon that died
        r = {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}
    results.setdefault(name, []).append(r)
    shown = f"{r['rate']:,.0f} msgs/s" if "rate" in r else r.get("error", "")[:300]
    print(f"  {name:<42} {shown}   ({time.perf_counter() - t:.0f} s)", flush=True)


def e2e(
    broker: LocalBroker,
    ends: dict[int, int],
    bundle: Path,
    backend: str,
    mode: str | None,
    cpus: Any,
    topic: str = TOPIC,
) -> dict[str, Any]:
    r = harness.backlog_run(broker.bootstrap, topic, ends, bundle, backend, mode, cpus=[cpus])
    r["rate"] = r["msgs_per_s"]
    return r


def naive(broker: LocalBroker, bundle: Path, a: argparse.Namespace, cpus: Any) -> dict[str, Any]:
    out_topic = f"naive-{uuid.uuid4().hex[:8]}"
    harness.create_topic(broker.bootstrap, out_topic)
    try:
        args = {
            "bootstrap": broker.bootstrap,
            "topic": TOPIC,
            "out_topic": out_topic,
            "bundle": str(bundle),
            "weights": str(bundle.with_suffix(".pt")),
            "warm": a.keys * (harness.WINDOW - 1),
            "n": a.naive,
        }
        return harness.run_worker("naive", args, cpus)
    finally:
        harness.delete_topics(broker.bootstrap, [out_topic])


def best(results: dict[str, list[dict[str, Any]]], name: str, key: str = "rate") -> float | None:
    rates = [r[key] for r in results.get(name, []) if r.get(key)]
    return max(rates) if rates else None


def main() -> int:
    a = parse_args()
    started = time.perf_counter()
    when = datetime.now(timezone.utc)
    load_before = load_average()
    n = a.keys * a.per_key
    print(f"bundle, broker, preload of {n:,} readings ...", flush=True)
    bundle = harness.bundle()
    adaptive = harness.bundle(adapt=True)
    card_bundle = harness.transaction_bundle()
    cards = harness.transactions(a.keys, a.per_key / 3.25, seed=2)  # about per_key payments each
    backends = list(harness.BACKENDS)
    modes: list[str | None] = list(harness.OUTPUT_MODES)
    results: dict[str, list[dict[str, Any]]] = {}
    latency: dict[str, dict[str, Any]] = {}
    with LocalBroker("throughput") as broker:
        sent, preload_s = harness.preload(
            broker.bootstrap, TOPIC, harness.messages(a.keys, a.per_key, seed=1)
        )
        ends = harness.end_offsets(broker.bootstrap, TOPIC)
        assert sum(ends.values()) == n, (ends, n)
        harness.preload(broker.bootstrap, CARDS, harness.to_messages(cards))
        card_ends = harness.end_offsets(broker.bootstrap, CARDS)
        print(
            f"  preloaded {sent:,} in {preload_s:.0f} s; backends {backends}; output modes {modes}",
            flush=True,
        )
        raw = {"bootstrap": broker.bootstrap, "topic": TOPIC, "partitions": harness.PARTITIONS, "n": n}
        for rep in range(a.repeats):
            print(f"repeat {rep + 1}/{a.repeats}", flush=True)
            measure(
                "raw kafka-python",
                results,
                lambda: harness.run_worker("raw", {**raw, "client": "kafka-python"}, a.cpu_set),
            )
            measure(
                "raw librdkafka",
                results,
                lambda: harness.run_worker("raw", {**raw, "client": "confluent"}, a.cpu_set),
            )
            measure(
                "decode kafka-python",
                results,
                lambda: harness.run_worker(
                    "raw", {**raw, "client": "kafka-python", "decode": True}, a.cpu_set
                ),
            )
            measure(
                "decode librdkafka",
                results,
                lambda: harness.run_worker("raw", {**raw, "client": "confluent", "decode": True}, a.cpu_set),
            )
            for backend in backends:
                for mode in modes:
                    measure(
                        f"e2e {backend} {mode or 'all'}",
                        results,
                        lambda b=backend, m=mode: e2e(broker, ends, bundle, b, m, a.cpu_set),  # type: ignore[misc]
                    )
            for backend in backends:  # what users meet beside the default sensor stream
                measure(
                    f"e2e {backend} all, transactions",
                    results,
                    lambda b=backend: e2e(broker, card_ends, card_bundle, b, None, a.cpu_set, CARDS),  # type: ignore[misc]
                )
                measure(
                    f"e2e {backend} all, streaming normalisation",
                    results,
                    lambda b=backend: e2e(broker, ends, adaptive, b, None, a.cpu_set),  # type: ignore[misc]
                )
            measure("naive", results, lambda: naive(broker, bundle, a, a.cpu_set))
        for backend in backends:
            sustained = best(results, f"e2e {backend} {modes[0] or 'all'}", "steady_msgs_per_s")
            if not sustained:
                continue
            print(f"latency {backend} at {sustained / 2:,.0f} readings/s ...", flush=True)
            latency[backend] = harness.paced_run(
                broker.bootstrap,
                bundle,
                backend,
                rate=sustained / 2,
                duration_s=harness.warmup_s(sustained / 2, a.keys) + a.latency_s,
                warmup_s=harness.warmup_s(sustained / 2, a.keys),
                n_keys=a.keys,
                output=modes[0],
                cpus=a.cpu_set,
                producer_cpus=a.other_cpus,
            )
            lat = latency[backend]
            print(
                f"  p50 {lat.get('p50_ms', 0):.0f} ms, p99 {lat.get('p99_ms', 0):.0f} ms "
                f"{lat.get('error', '')}",
                flush=True,
            )
    summary = summarise(
        a, results, latency, backends, modes, n, when, load_before, time.perf_counter() - started
    )
    if not a.no_write:
        write_section("throughput", section(a, results, latency, backends, modes, summary))
        drop_section("performance")
    print(json.dumps(summary))
    return 0


def summarise(
    a: argparse.Namespace,
    results: dict[str, list[dict[str, Any]]],
    latency: dict[str, dict[str, Any]],
    backends: list[str],
    modes: list[str | None],
    n: int,
    when: datetime,
    load_before: str,
    seconds: float,
) -> dict[str, Any]:
    default = modes[0] or "all"
    raw = best(results, "raw kafka-python")
    e2e_default = best(results, f"e2e kafka-python {default}")
    naive = best(results, "naive")
    lat = latency.get("kafka-python", {})
    out: dict[str, Any] = {
        "quick": a.quick,
        "readings": n,
        "raw_msgs_per_s": raw,
        "raw_librdkafka_msgs_per_s": best(results, "raw librdkafka"),
        "decode_msgs_per_s": best(results, "decode kafka-python"),
        "decode_librdkafka_msgs_per_s": best(results, "decode librdkafka"),
        "e2e_msgs_per_s": e2e_default,
        "e2e_steady_msgs_per_s": best(results, f"e2e kafka-python {default}", "steady_msgs_per_s"),
        "e2e_librdkafka_msgs_per_s": best(results, f"e2e confluent-kafka {default}"),
        "e2e_librdkafka_batch_msgs_per_s": best(results, "e2e confluent-kafka batch"),
        "e2e_librdkafka_over_raw": ratio(
            best(results, f"e2e confluent-kafka {default}"), best(results, "raw librdkafka")
        ),
        "e2e_transactions_msgs_per_s": {b: best(results, f"e2e {b} all, transactions") for b in backends},
        "e2e_streaming_normalisation_msgs_per_s": {
            b: best(results, f"e2e {b} all, streaming normalisation") for b in backends
        },
        "e2e_by_backend_and_output": {
            f"{b} {m or 'all'}": best(results, f"e2e {b} {m or 'all'}") for b in backends for m in modes
        },
        "naive_msgs_per_s": naive,
        "e2e_over_raw": e2e_default / raw if e2e_default and raw else None,
        "e2e_over_naive": e2e_default / naive if e2e_default and naive else None,
        "p50_latency_ms": lat.get("p50_ms"),
        "p95_latency_ms": lat.get("p95_ms"),
        "p99_latency_ms": lat.get("p99_ms"),
        "latency_rate_msgs_per_s": lat.get("rate"),
        "p99_latency_librdkafka_ms": latency.get("confluent-kafka", {}).get("p99_ms"),
        "date": f"{when:%Y-%m-%d %H:%M} UTC",
        "load_before": load_before,
        "load_after": load_average(),
        "run_s": round(seconds),
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _fmt(v: Any, digits: int = 0) -> str:
    return "" if v is None else f"{v:,.{digits}f}"


def section(
    a: argparse.Namespace,
    results: dict[str, list[dict[str, Any]]],
    latency: dict[str, dict[str, Any]],
    backends: list[str],
    modes: list[str | None],
    s: dict[str, Any],
) -> str:
    cmd = ".venv/bin/python bench/throughput.py" + (" --quick" if a.quick else "")
    rows = []
    for name, runs in results.items():
        rates = [r["rate"] for r in runs if "rate" in r]
        errors = [r["error"] for r in runs if "error" in r]
        cpu = [r["cpu_s"] / r["elapsed_s"] for r in runs if r.get("cpu_s") and r.get("elapsed_s")]
        extra = []
        if name.startswith("e2e"):
            ok = [r for r in runs if "rate" in r]
            if ok:
                r = max(ok, key=lambda r: r["rate"])
                extra.append(f"steady {_fmt(r['steady_msgs_per_s'])}/s after a {r['ready_s']:.1f} s start")
                expected = harness.expected_windows(a.keys, a.per_key)
                check = f" of {expected:,} windows" if name.endswith(" all") else ""
                if check and r["scores"] != expected:
                    check += " (MISMATCH)"
                extra.append(f"{r['scores']:,} score msgs{check}")
                extra.append(f"peak RSS {r['rss_peak_mib']:.0f} MiB")
        if name == "naive":
            extra.append(
                f"timed on {a.naive:,} readings that each complete a window, "
                f"after {a.keys * 29:,} that fill them"
            )
        if errors:
            extra.append("failed: " + errors[0].splitlines()[-1][:200].replace("|", "/"))
        rows.append(
            f"| {name} | {' / '.join(_fmt(r) for r in rates)} | {_fmt(max(rates) if rates else None)} | "
            f"{' / '.join(f'{c:.2f}' for c in cpu)} | {'; '.join(extra)} |"
        )
    lat_rows = [
        f"| {b} | {_fmt(r.get('rate'))} | {_fmt(r.get('sent_per_s'))} | {_fmt(r.get('windows_measured'))} | "
        f"{_fmt(r.get('p50_ms'))} | {_fmt(r.get('p95_ms'))} | {_fmt(r.get('p99_ms'))} | "
        f"{_fmt(r.get('max_ms'))} | {_fmt(r.get('commits'))} | {_fmt(r.get('commit_mean_ms'), 1)} | "
        f"{r.get('error', '').splitlines()[-1][:150] if r.get('error') else ''} |"
        for b, r in latency.items()
    ]
    lines = [
        "## Throughput against the ceilings",
        "",
        f"Written by `bench/throughput.py` on {s['date']}; every number below was measured in that one run "
        f"({s['run_s']} s){' — a --quick run' if a.quick else ''}.",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {machine()}. The Python side (bare consumers, daemon, naive baseline) is pinned to "
        f"CPU {a.cpus or 'none'}; the broker (JVM) and the paced producer use every core. ONNX Runtime on "
        "one thread, CPU provider. Load average (1/5/15 min) before / after: "
        f"{s['load_before']} / {s['load_after']} (other sessions ran tests on this machine meanwhile).",
        "",
        f"Data: one topic, {s['readings']:,} readings (one JSON reading per message, {a.keys:,} keys × "
        f"{a.per_key:,}, 5 features, {harness.PARTITIONS} partitions); a dense bundle, window 30 "
        "(*streaming normalisation*: the same, trained with `STREAMAE_TRAIN__ADAPT__HALF_LIFE=500`). "
        f"*transactions*: a second topic of card payments of {a.keys:,} accounts (about "
        f"{a.per_key:,} each: an amount and three string fields), a dense bundle, window "
        f"{harness.TRANSACTION_WINDOW}, with the per-account derived features `streamae train` adds. "
        f"{a.repeats} alternating repeat(s) of each measurement on the same records.",
        "",
        "| measurement | runs (readings/s) | best | CPU (cores busy) | note |",
        "|---|---:|---:|---:|---|",
        *rows,
        "",
        "- *raw*: no group, every partition assigned, polled until every record is seen; timed from "
        "creating the consumer. *decode* adds `ReadingDecoder.decode` per partition batch (librdkafka: "
        "records first wrapped in streamae's `Record`, as a transport does).",
        "- *e2e*: `python -m streamae serve` in a fresh process, fresh output topics and group; timed "
        "from process start until the group's committed `scored_through` reaches the last offset of "
        "every partition (the daemon commits only after every output is acknowledged). *steady* "
        "excludes the start (imports, bundle, ONNX session; until the daemon logs `serving`). "
        "CPU is the daemon's CPU-seconds over wall time: above 1 means client threads beside the loop.",
        "- *naive*: one message at a time through kafka-python's iterator, `json.loads`, a "
        "per-key deque, one PyTorch forward (same weights, one thread, `no_grad`) per window, "
        "one synchronous produce (`.get()`, acks=all) per score. Extrapolated: timed on a slice.",
        "",
        "Ratios (this run): "
        f"kafka-python e2e / its raw = **{_fmt(s['e2e_over_raw'], 2)}** (target ≥ 0.5), "
        f"e2e / naive = **{_fmt(s['e2e_over_naive'], 1)}** (target ≥ 20), "
        f"e2e on librdkafka = **{_fmt(s['e2e_librdkafka_msgs_per_s'])}**/s (target ≥ 100,000), "
        f"**{_fmt(s['e2e_librdkafka_over_raw'], 2)}**× its raw (target ≥ 0.4), batch output "
        f"**{_fmt(s['e2e_librdkafka_batch_msgs_per_s'])}**/s (target ≥ 200,000).",
        "",
        "Latency at half the sustained rate (the rate is half the best *steady* e2e rate above): a producer "
        "process paces readings of every key and stamps each with its wall-clock send time as `ts`; "
        "the scores topic uses `message.timestamp.type=LogAppendTime`, so a window's latency is the "
        "broker's append time of its score minus `window_end` (its last reading's send time). Windows "
        "ending before every key has filled its first window (at least 5 s) are left out; then "
        f"{a.latency_s:g} s are measured. *commits* and *commit ms* (mean publish → acks → state → "
        "commit) come from the daemon's metrics (`streamae_commit_seconds`).",
        "",
        "| backend | offered/s | sent/s | windows | p50 ms | p95 ms | p99 ms | max ms | commits | commit ms "
        "| note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *lat_rows,
        "",
    ]
    lines += ["JSON line:", "", "```json", json.dumps(s), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
