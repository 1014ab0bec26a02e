"""Soak run: steady load for a long time while the group and the broker are disturbed; writes
the soak section of docs/operations.md and the plot docs/soak-rss.png.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 300] [--keys 40]

Not part of CI. On a fresh local broker (free port, data under .bench/), one input topic fed
by a paced idempotent producer (every reading stamped with its send time) is served by one
group per delivery mode at the same time, each of ``streamae serve`` processes:

- member A of each group runs from start to end (its resident memory is sampled every second);
- member B of each group joins or leaves every ``--toggle-s`` seconds (SIGTERM: a graceful
  leave; the two groups toggle half a period apart; a join due while the broker is down
  waits until it is up, since ``serve`` gives up after 30 s without a broker at start-up);
- the broker is restarted (stopped, started again on its data) at 30 % and 60 % of the run,
  and stopped for ``--outage-s`` seconds at 80 %.

Every second the groups' commits (``scored_through`` per input partition) and the input's end
offsets are sampled: a partition *makes no progress* while it has input beyond its commit and
the commit does not move. Once the producer stops and both groups have committed everything,
an independent reader (kafka-python, ``read_committed``, no group) reads the input topic and
both score topics: every reading that completes a window of its key (``window``-th reading and
on, in partition order) must have exactly one score, named by ``source.partition`` and
``source.offset_end``. Exit status 1 when a window is lost in either mode or doubled in
exactly-once mode (at-least-once may repeat outputs after a rebalance; they are counted).
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from common import ROOT, LocalBroker, free_port, load_average, machine, write_section

MODES = ("at_least_once", "exactly_once")
DOC = ROOT / "docs" / "operations.md"
PLOT = ROOT / "docs" / "soak-rss.png"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="how long the load runs")
    p.add_argument("--rate", type=float, default=300.0, help="readings per second offered")
    p.add_argument("--keys", type=int, default=40, help="entities the readings are spread over")
    p.add_argument("--toggle-s", type=float, default=60.0, help="member B joins or leaves this often")
    p.add_argument("--outage-s", type=float, default=60.0, help="length of the broker outage at 80 %%")
    p.add_argument("--backend", default="kafka-python", help="STREAMAE_KAFKA__BACKEND of every member")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    return p.parse_args()


# -- members ---------------------------------------------------------------------------


class Members:
    """One group's members: A always on, B toggled; every exit that was not asked for is
    recorded (and A restarted) so the soak goes on and the report says so."""

    def __init__(self, run: harness.Run, bundle: Path, backend: str, mode: str) -> None:
        self.run, self.bundle, self.backend, self.mode = run, bundle, backend, mode
        self.a = self._start("A")
        self.b: harness.Daemon | None = None
        self.leaving: list[tuple[harness.Daemon, float]] = []
        self.b_count = 0
        self.joins = self.leaves = 0
        self.unexpected_exits: list[str] = []
        self.logs: list[Path] = [self.a.log_path]
        self.rss: list[tuple[float, float]] = []  # (seconds since the soak began, MiB) of A

    def _start(self, tag: str) -> harness.Daemon:
        extra = {"STREAMAE_KAFKA__DELIVERY": self.mode, "STREAMAE_METRICS_PORT": str(free_port())}
        return harness.Daemon(self.run, self.bundle, self.backend, extra=extra, tag=f"-{tag}")

    def toggle(self) -> str:
        if self.b is None:
            self.b_count += 1
            self.b = self._start(f"B{self.b_count}")
            self.logs.append(self.b.log_path)
            self.joins += 1
            return "B joins"
        self.b.proc.send_signal(signal.SIGTERM)  # reaped in tick(): a leave must not block sampling
        self.leaving.append((self.b, time.monotonic()))
        self.b = None
        self.leaves += 1
        return "B leaves"

    def tick(self, since: float) -> None:
        for name in ("a", "b"):
            d: harness.Daemon | None = getattr(self, name)
            if d is None:
                continue
            try:
                d.tick()
            except RuntimeError as exc:
                self.unexpected_exits.append(f"{name.upper()} ({d.log_path.name}): {exc}")
                d.stop()
                if name == "a":
                    self.a = self._start(f"A{len(self.unexpected_exits)}")
                    self.logs.append(self.a.log_path)
                else:
                    self.b = None
        if self.a.rss:
            self.rss.append((time.monotonic() - since, self.a.rss[-1][1]))
            self.a.rss.clear()
        for d, asked in list(self.leaving):
            if d.proc.poll() is not None or time.monotonic() - asked > 90:
                code = d.stop(timeout_s=1)  # kills one that ignored SIGTERM for 90 s
                if code:
                    self.unexpected_exits.append(f"{d.log_path.name} left with exit status {code}")
                self.leaving.remove((d, asked))

    def stop(self) -> None:
        for d in [self.a, self.b, *(d for d, _ in self.leaving)]:
            if d is not None:
                code = d.stop()
                if code:
                    self.unexpected_exits.append(f"{d.log_path.name} stopped with exit status {code}")

    def log_lines(self, needle: str) -> int:
        return sum(p.read_text(errors="replace").count(needle) for p in self.logs if p.exists())


# -- progress --------------------------------------------------------------------------


@dataclass
class Gap:
    """The longest spell one partition of one group had input beyond its commit and no
    advance of it; ``outside_outages``: the same with the broker's own down time taken out."""

    seconds: float = 0.0
    outside_outages: float = 0.0
    at_s: float = 0.0  # when the spell began, seconds since the soak began
    partition: int = -1


@dataclass
class Progress:
    """Per (mode, partition): when its commit last moved (or it had nothing left to do)."""

    since: float
    last_move: dict[tuple[str, int], float] = field(default_factory=dict)
    last_value: dict[tuple[str, int], int] = field(default_factory=dict)
    longest: dict[str, Gap] = field(default_factory=dict)
    lag: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: collections.defaultdict(list))

    def sample(
        self, mode: str, ends: dict[int, int], through: dict[int, int], downs: list[list[float]]
    ) -> None:
        now = time.monotonic()
        self.lag[mode].append(
            (now - self.since, sum(max(0, e - 1 - through.get(p, -1)) for p, e in ends.items()))
        )
        for p, end in ends.items():
            key, value = (mode, p), through.get(p, -1)
            if value != self.last_value.get(key) or value >= end - 1:
                self.last_move[key], self.last_value[key] = now, value
                continue
            began = self.last_move.setdefault(key, now)
            spell = now - began
            down = sum(max(0.0, min(now, b if b else now) - max(began, a)) for a, b in downs)
            gap = self.longest.setdefault(mode, Gap())
            if spell > gap.seconds:
                gap.seconds, gap.at_s, gap.partition = spell, began - self.since, p
            gap.outside_outages = max(gap.outside_outages, spell - down)


class EndOffsets:
    """End offsets of the input topic from one long-lived client (None while the broker is away)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, request_timeout_ms=5000
        )
        self.parts = [TopicPartition(topic, p) for p in range(harness.PARTITIONS)]

    def get(self) -> dict[int, int] | None:
        try:
            return {tp.partition: int(o) for tp, o in self.consumer.end_offsets(self.parts).items()}
        except Exception:  # the broker is down or restarting: sample again next second
            return None

    def close(self) -> None:
        self.consumer.close()


# -- the broker's schedule -------------------------------------------------------------


def broker_schedule(
    broker: LocalBroker,
    minutes: float,
    outage_s: float,
    since: float,
    downs: list[list[float]],
    events: list[tuple[float, str]],
    done: threading.Event,
) -> None:
    """Restart the broker at 30 % and 60 %, stop it for ``outage_s`` at 80 % (in a thread of
    its own: sampling goes on meanwhile). ``downs`` gets [stopped at, up again at] spells."""
    total = minutes * 60
    kafka_sh = ["bash", str(ROOT / "deploy" / "kafka.sh")]
    for at, pause, what in (
        (0.3, 0.0, "broker restart"),
        (0.6, 0.0, "broker restart"),
        (0.8, outage_s, f"broker outage {outage_s:g} s"),
    ):
        while time.monotonic() - since < at * total:
            if done.wait(1):
                return
        spell = [time.monotonic(), 0.0]
        downs.append(spell)
        events.append((spell[0] - since, what))
        subprocess.run([*kafka_sh, "stop", str(broker.dir)], check=True, capture_output=True)
        time.sleep(pause)
        subprocess.run(
            [*kafka_sh, "start", str(broker.port), str(broker.dir)], check=True, capture_output=True
        )
        spell[1] = time.monotonic()
        events.append((spell[1] - since, f"broker up ({spell[1] - spell[0]:.0f} s down)"))


# -- the independent reader ------------------------------------------------------------


def read_all(bootstrap: str, topic: str, isolation: str = "read_committed") -> dict[int, list[Any]]:
    """Every record of ``topic`` up to its end (last stable offset under read_committed), per partition."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation,
        max_poll_records=10_000,
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        end = c.end_offsets(parts)
        c.assign(parts)
        c.seek_to_beginning(*parts)
        out: dict[int, list[Any]] = {tp.partition: [] for tp in parts}
        quiet = time.monotonic()
        while any(c.position(tp) < end[tp] for tp in parts):
            got = c.poll(timeout_ms=500)
            for tp, records in got.items():
                out[tp.partition].extend(r for r in records if r.offset < end[tp])
            if got:
                quiet = time.monotonic()
            elif time.monotonic() - quiet > 60:
                raise TimeoutError(f"reading {topic}: nothing new for 60 s short of its end {end}")
        return out
    finally:
        c.close()


def window_ends(bootstrap: str, topic: str, window: int) -> set[tuple[int, int]]:
    """(partition, offset) of every input reading that completes a window of its key."""
    ends: set[tuple[int, int]] = set()
    for p, records in read_all(bootstrap, topic, "read_uncommitted").items():
        seen: collections.Counter[str] = collections.Counter()
        for r in records:
            key = orjson.loads(r.value)["key"]
            seen[key] += 1
            if seen[key] >= window:
                ends.add((p, r.offset))
    return ends


def audit(bootstrap: str, run: harness.Run, expected: set[tuple[int, int]]) -> dict[str, int]:
    scored: collections.Counter[tuple[int, int]] = collections.Counter()
    for records in read_all(bootstrap, run.scores_topic).values():
        for r in records:
            src = orjson.loads(r.value)["source"]
            scored[(src["partition"], src["offset_end"])] += 1
    dead = sum(len(v) for v in read_all(bootstrap, run.topics()["DLQ_TOPIC"]).values())
    return {
        "expected": len(expected),
        "scored": len(scored),
        "lost": len(expected - scored.keys()),
        "unexpected": len(scored.keys() - expected),
        "duplicated": sum(n - 1 for n in scored.values() if n > 1),
        "dead_letters": dead,
    }


# -- the soak --------------------------------------------------------------------------


def soak(a: argparse.Namespace, broker: LocalBroker) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    bundle = harness.bundle()
    topic = f"soak-{uuid.uuid4().hex[:8]}"
    harness.create_topic(bootstrap, topic)
    runs = {m: harness.Run(bootstrap, topic) for m in MODES}
    for r in runs.values():
        r.create()
    groups = {m: Members(runs[m], bundle, a.backend, m) for m in MODES}
    commits = harness.Commits(bootstrap)
    offsets = EndOffsets(bootstrap, topic)
    since = time.monotonic()
    progress = Progress(since)
    downs: list[list[float]] = []
    events: list[tuple[float, str]] = []
    done = threading.Event()
    total = a.minutes * 60
    pace = {
        "bootstrap": bootstrap,
        "topic": topic,
        "rate": a.rate,
        "seconds": total,
        "keys": a.keys,
        "idempotent": True,
    }
    pacer = subprocess.Popen(
        [sys.executable, harness.__file__, "pace", orjson.dumps(pace).decode()],
        stdout=subprocess.PIPE,
        stderr=(harness.WORK / "logs" / f"{topic}-producer.log").open("wb"),  # librdkafka's reconnect noise
    )
    broker_thread = threading.Thread(
        target=broker_schedule, args=(broker, a.minutes, a.outage_s, since, downs, events, done), daemon=True
    )
    broker_thread.start()
    next_toggle = {m: a.toggle_s * (1 + i / 2) for i, m in enumerate(MODES)}
    restarts_seen = 0
    try:
        from tqdm import tqdm

        with tqdm(total=int(total), unit="s", desc="soak") as bar:
            while pacer.poll() is None:
                now = time.monotonic() - since
                broker_down = bool(downs) and not downs[-1][1]
                for m, g in groups.items():
                    g.tick(since)
                    # a join waits for the broker: serve gives up after 30 s without one at start-up
                    due = now >= next_toggle[m] and now < total - a.toggle_s / 2
                    if due and not (broker_down and g.b is None):
                        events.append((now, f"{m}: {g.toggle()}"))
                        next_toggle[m] += a.toggle_s
                if len(downs) != restarts_seen and not broker_down:  # fresh clients after a restart
                    restarts_seen = len(downs)
                    offsets.close()
                    commits.close()
                    offsets, commits = EndOffsets(bootstrap, topic), harness.Commits(bootstrap)
                sample(offsets, commits, runs, progress, downs)
                bar.update(int(now) - bar.n)
                time.sleep(max(0.0, 1 - (time.monotonic() - since - now)))
        sent = orjson.loads(pacer.communicate()[0].splitlines()[-1])
        events.append((time.monotonic() - since, f"producer done: {sent['sent']} readings"))
        done.set()
        broker_thread.join()
        drained = drain(offsets, commits, runs, groups, progress, downs, since)
        events.append(
            (
                time.monotonic() - since,
                "every group committed everything" if drained else "not drained within 15 min",
            )
        )
    finally:
        done.set()
        if pacer.poll() is None:
            pacer.kill()
        for g in groups.values():
            g.stop()
        offsets.close()
        commits.close()
    expected = window_ends(bootstrap, topic, harness.WINDOW)
    result = {
        "modes": {
            m: {
                **audit(bootstrap, runs[m], expected),
                "gap": progress.longest.get(m, Gap()),
                "joins": g.joins,
                "leaves": g.leaves,
                "unexpected_exits": g.unexpected_exits,
                "watchdog": g.log_lines("watchdog:"),
                "tracebacks": g.log_lines("Traceback"),
                "rss": g.rss,
                "lag": progress.lag[m],
            }
            for m, g in groups.items()
        },
        "sent": sent,
        "events": events,
        "downs": [(x - since, y - since) for x, y in downs],
        "drained": drained,
    }
    for r in runs.values():
        r.drop()
    harness.delete_topics(bootstrap, [topic])
    return result


def sample(
    offsets: EndOffsets,
    commits: harness.Commits,
    runs: dict[str, harness.Run],
    progress: Progress,
    downs: list[list[float]],
) -> dict[str, bool]:
    """One progress sample of every group; which groups have committed everything."""
    ends = offsets.get()
    caught_up = {}
    for m, r in runs.items():
        through = commits.scored_through(r.group, r.input_topic)
        if ends is None or not through:
            caught_up[m] = False
            continue
        progress.sample(m, ends, through, downs)
        caught_up[m] = all(through.get(p, -1) >= e - 1 for p, e in ends.items())
    return caught_up


def drain(
    offsets: EndOffsets,
    commits: harness.Commits,
    runs: dict[str, harness.Run],
    groups: dict[str, Members],
    progress: Progress,
    downs: list[list[float]],
    since: float,
) -> bool:
    """Sample until every group has committed the whole input (at most 15 minutes)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        for g in groups.values():
            g.tick(since)
        if all(sample(offsets, commits, runs, progress, downs).values()):
            return True
        time.sleep(1)
    return False


# -- the report ------------------------------------------------------------------------


def rss_stats(rss: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """First minute's median, last minute's median, peak (MiB) and the slope of the second
    half (MiB per hour, least squares)."""
    t = np.array([x for x, _ in rss])
    r = np.array([y for _, y in rss])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], r[half], 1)[0] * 3600) if half.sum() > 2 else float("nan")
    return float(np.median(r[t <= 60])), float(np.median(r[t >= t[-1] - 60])), float(r.max()), slope


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for m, r in result["modes"].items():
        t, mib = zip(*r["rss"])
        top.plot(np.array(t) / 60, mib, label=f"member A, {m}")
        t, lag = zip(*r["lag"])
        bottom.plot(np.array(t) / 60, lag, label=m)
    for ax in (top, bottom):
        for x, y in result["downs"]:
            ax.axvspan(x / 60, (y or x) / 60, color="red", alpha=0.15)
    top.set_ylabel("resident memory, MiB")
    bottom.set_ylabel("readings not yet committed")
    bottom.set_xlabel("minutes (red: broker down)")
    top.legend(loc="lower right")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)


def report(a: argparse.Namespace, result: dict[str, Any], when: str, load_before: str) -> str:
    sent = result["sent"]
    lines = [
        "## Soak",
        "",
        f"Measured {when} on {machine()} (load before: {load_before}) with "
        f"`.venv/bin/python bench/soak.py --minutes {a.minutes:g} --rate {a.rate:g} --keys {a.keys} "
        f"--toggle-s {a.toggle_s:g} --outage-s {a.outage_s:g} --backend {a.backend}`: "
        f"{sent['sent']:,} readings over {a.keys} keys at {sent['rate']:.0f}/s into one topic of "
        f"{harness.PARTITIONS} partitions, served at the same time by one group per delivery mode "
        f"(window {harness.WINDOW}). Member A of each group ran throughout; member B joined or left "
        f"every {a.toggle_s:g} s; the broker was restarted twice and stopped for {a.outage_s:g} s "
        "(see the module docstring of `bench/soak.py`). An independent reader "
        "(`read_committed`, no group) checked afterwards that every reading completing a window "
        "has exactly one score.",
        "",
        "| | at_least_once | exactly_once |",
        "|---|---:|---:|",
    ]
    m = result["modes"]

    def row(name: str, f: Any) -> None:
        lines.append(f"| {name} | " + " | ".join(f(m[x]) for x in MODES) + " |")

    row("windows expected", lambda r: f"{r['expected']:,}")
    row("lost", lambda r: f"{r['lost']:,}")
    row("duplicated", lambda r: f"{r['duplicated']:,}")
    row("scores for no window", lambda r: f"{r['unexpected']:,}")
    row("dead letters", lambda r: f"{r['dead_letters']:,}")
    row("joins / leaves of B", lambda r: f"{r['joins']} / {r['leaves']}")
    row(
        "longest no progress, any partition",
        lambda r: f"{r['gap'].seconds:.0f} s (p{r['gap'].partition} from minute {r['gap'].at_s / 60:.1f})",
    )
    row("the same, broker down time taken out", lambda r: f"{r['gap'].outside_outages:.0f} s")
    row("stall watchdog warnings (all members' logs)", lambda r: f"{r['watchdog']}")
    row("tracebacks in the logs", lambda r: f"{r['tracebacks']}")
    row("unexpected exits", lambda r: f"{len(r['unexpected_exits'])}")
    stats = {x: rss_stats(m[x]["rss"]) for x in MODES}
    lines.append(
        "| member A's RSS, first / last minute / peak | "
        + " | ".join(f"{s[0]:.0f} / {s[1]:.0f} / {s[2]:.0f} MiB" for s in stats.values())
        + " |"
    )
    lines.append(
        "| its trend over the second half | "
        + " | ".join(f"{s[3]:+.1f} MiB/h" for s in stats.values())
        + " |"
    )
    lines += [
        "",
        "At-least-once may repeat outputs published after the last commit of a member that lost "
        "its partitions; exactly-once must repeat nothing to a `read_committed` reader. A "
        "partition *makes no progress* while it has input beyond its committed `scored_through` "
        "and that commit does not move (sampled every second, so a commit interval counts too).",
        "",
        "![member A's resident memory and the uncommitted readings over the soak](soak-rss.png)",
        "",
        "Events (minutes since the load began):",
        "",
    ]
    lines += [f"- {t / 60:.1f}: {what}" for t, what in result["events"] if "B " not in what]
    lines.append(f"- every {a.toggle_s:g} s: B joined or left (one group half a period after the other)")
    for x in MODES:
        for e in m[x]["unexpected_exits"]:
            lines.append(f"- unexpected exit ({x}): {e.splitlines()[0]}")
    if not result["drained"]:
        lines.append("- **the groups had not committed the whole input 15 minutes after the load stopped**")
    return "\n".join(lines)


def main() -> int:
    a = parse_args()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    with LocalBroker("soak") as broker:
        result = soak(a, broker)
    text = report(a, result, when, load_before)
    print(text)
    if not a.no_write:
        plot(result)
        write_section("soak", text, DOC)
    m = result["modes"]
    bad = any(r["lost"] or r["unexpected"] for r in m.values()) or m["exactly_once"]["duplicated"]
    return 1 if bad or not result["drained"] else 0


if __name__ == "__main__":
    sys.exit(main())
