"""The Kafka side of the throughput, latency and profile benchmarks.

Readings of the product's simulator (``streamae simulate``: five correlated sensors per
machine), a bundle trained on it, preloading a topic, the daemon (`streamae serve`) as a
process of its own, and the workers that run in processes of their own so that each
measurement starts from a fresh interpreter on the same pinned core: bare consumers
(kafka-python, librdkafka), consume + decode, the naive baseline, and a producer pacing
readings at a fixed rate.

    python bench/harness.py WORKER 'JSON arguments'      (the benchmarks run this)

Completion of a daemon run is read from the group's commits: the daemon commits
``{"scored_through": N}`` only after every output of the offsets up to N is acknowledged,
so a run is done when every input partition's ``scored_through`` reaches its last offset.
Latency is read from the scores topic, created with ``message.timestamp.type=LogAppendTime``:
the broker stamps each score with the time it appended it, and the reading's event time
(``ts``) is the wall-clock time the paced producer sent it, so a score's latency is
``append time - window_end`` (same host clock) with no follower in the measurement; in
exactly-once mode a score is visible only once its transaction commits, so a ``read_committed``
follower stamps when each became readable instead (:class:`Follower`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_seconds, free_port, rss_mib

from streamae.demo.simulate import SENSORS, simulate, to_messages
from streamae.serving.commit.checkpoint import scored_through
from streamae.serving.transport import Offset

FEATURES = SENSORS
WINDOW = 30
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: event time of the first preloaded reading
STEP_S = 60.0
DAY_STEPS = 1440
WORK = ROOT / ".bench"
PARTITIONS = 4


# -- data: the product's simulator -----------------------------------------------------


def readings(n_keys: int, per_key: int, seed: int) -> pd.DataFrame:
    """``per_key`` normal readings a minute apart of ``n_keys`` machines, from the product's
    simulator (``streamae simulate``), in time order: every key's reading at one time, then
    the next time."""
    sim = simulate(n_keys, per_key * STEP_S, STEP_S, anomalies_per_entity=0, start=T0, seed=seed)
    return sim.frame.drop(columns=["label", "anomaly_type"])


def messages(n_keys: int, per_key: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` of one JSON reading per message (:func:`readings`)."""
    return to_messages(readings(n_keys, per_key, seed))


def expected_windows(n_keys: int, per_key: int) -> int:
    return n_keys * max(0, per_key - WINDOW + 1)


# -- the bundle ------------------------------------------------------------------------


def bundle(epochs: int = 5, adapt: bool = False) -> Path:
    """A dense bundle (window 30) on ten simulated keys, cached under ``.bench/``; its
    PyTorch weights are kept beside it (``model.pt``) for the naive baseline. ``adapt``:
    with streaming normalisation (``STREAMAE_TRAIN__ADAPT__HALF_LIFE`` 500)."""
    from streamae.core.config import TrainSettings

    name = f"throughput-v3-dense-w{WINDOW}-f{len(FEATURES)}-e{epochs}" + ("-adapt" if adapt else "")
    cfg = TrainSettings(
        variant="dense",
        window=WINDOW,
        epochs=epochs,
        threshold="quantile",
        quantile=0.999,
        adapt={"half_life": 500.0} if adapt else {},
    )
    return _cached_bundle(WORK / "bundles" / name, lambda: readings(10, 3000, seed=99), cfg)


#: window of the transaction bundle: an account's last five payments
TRANSACTION_WINDOW = 5


def transactions(n_keys: int, days: float, seed: int) -> pd.DataFrame:
    """``days`` of normal card payments of ``n_keys`` accounts (the transaction demo's
    simulator: a numeric amount, three categorical fields), in time order."""
    from streamae.demo.transactions import simulate_transactions

    sim = simulate_transactions(n_keys, days, frauds_per_account=0, seed=seed)
    return sim.frame.drop(columns=["label", "anomaly_type"]).reset_index(drop=True)


def transaction_bundle(epochs: int = 3) -> Path:
    """A dense bundle (window 5) on 200 simulated accounts, with the per-account derived
    features ``streamae train`` adds to string fields (new-for-key, recent activity)."""
    from streamae.core.config import TrainSettings

    cfg = TrainSettings(variant="dense", window=TRANSACTION_WINDOW, epochs=epochs)
    out = WORK / "bundles" / f"transactions-v1-dense-w{TRANSACTION_WINDOW}-e{epochs}"
    return _cached_bundle(out, lambda: transactions(200, 60, seed=99), cfg)


def _cached_bundle(out: Path, history: Any, cfg: Any) -> Path:
    from streamae.core.bundle import BundleError, load_bundle

    weights = out.with_suffix(".pt")
    try:
        load_bundle(out)
        if weights.exists():
            return out
    except BundleError:
        pass
    import torch

    from streamae.training.fit import fit

    result = fit(history(), out, cfg, progress=False)
    torch.save(result.model.state_dict(), weights)
    return out


# -- Kafka helpers ---------------------------------------------------------------------


def kafka_settings(bootstrap: str, **kw: Any) -> Any:
    from streamae.core.config import KafkaSettings

    return KafkaSettings(bootstrap_servers=bootstrap, **kw)


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS, **configs: str) -> None:
    from streamae.serving.clients.admin import ensure_topics

    ensure_topics(
        kafka_settings(bootstrap), [topic], partitions, {k.replace("_", "."): v for k, v in configs.items()}
    )


def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        gone = [t for t in topics if t in existing]
        if gone:
            admin.delete_topics(gone, raise_errors=False)
    finally:
        admin.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return {tp.partition: int(o) for tp, o in c.end_offsets(parts).items()}
    finally:
        c.close()


def preload(bootstrap: str, topic: str, messages: Iterator[tuple[bytes, bytes]]) -> tuple[int, float]:
    """Produce ``messages`` to a new ``topic`` (PARTITIONS partitions; with librdkafka, several
    times faster than kafka-python); how many and how long it took."""
    from confluent_kafka import Producer

    create_topic(bootstrap, topic)
    t = time.perf_counter()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20, "acks": "all"})
    n = 0
    for n, (key, value) in enumerate(messages, 1):  # n: how many, after the loop
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
        if not n % 10_000:
            p.poll(0)
    if p.flush(120):
        raise RuntimeError(f"preloading {topic}: messages left undelivered")
    return n, time.perf_counter() - t


# -- what the benchmarks run ------------------------------------------------------------

#: the backends of ``STREAMAE_KAFKA__BACKEND`` (default first): both install with the package
BACKENDS = ("confluent-kafka", "kafka-python")
#: ``STREAMAE_OUTPUT__SCORES`` (default first)
OUTPUT_MODES = ("all", "above", "batch")


# -- the daemon as a process -----------------------------------------------------------


@dataclass
class Run:
    """One daemon run's topics and group; fresh names for every run."""

    bootstrap: str
    input_topic: str
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def topics(self) -> dict[str, str]:
        return {
            "INPUT_TOPIC": self.input_topic,
            "SCORES_TOPIC": f"{self.name}.scores",
            "ALERTS_TOPIC": f"{self.name}.alerts",
            "DLQ_TOPIC": f"{self.name}.dlq",
            "STATE_TOPIC": f"{self.name}.state",
            "GROUP_ID": f"{self.name}.group",
        }

    @property
    def scores_topic(self) -> str:
        return f"{self.name}.scores"

    @property
    def group(self) -> str:
        return f"{self.name}.group"

    def create(self) -> None:
        """Output topics (scores stamped by the broker at append time) and the state topic."""
        from streamae.serving.clients.admin import ensure_topics

        t = self.topics()
        k = kafka_settings(self.bootstrap)
        ensure_topics(k, [t["SCORES_TOPIC"]], PARTITIONS, {"message.timestamp.type": "LogAppendTime"})
        ensure_topics(k, [t["ALERTS_TOPIC"], t["DLQ_TOPIC"]], PARTITIONS)
        ensure_topics(k, [t["STATE_TOPIC"]], PARTITIONS, {"cleanup.policy": "compact"})

    def drop(self) -> None:
        t = self.topics()
        delete_topics(
            self.bootstrap, [t[k] for k in ("SCORES_TOPIC", "ALERTS_TOPIC", "DLQ_TOPIC", "STATE_TOPIC")]
        )

    def env(self, bundle: Path, backend: str, output: str | None, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
        env.update({f"STREAMAE_KAFKA__{k}": v for k, v in self.topics().items()})
        env.update(
            {
                "STREAMAE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "STREAMAE_KAFKA__BACKEND": backend,
                "STREAMAE_MODEL__BUNDLE": str(bundle),
                "STREAMAE_MODEL__PROVIDERS": '["CPUExecutionProvider"]',
                "STREAMAE_MODEL__INTRA_OP_THREADS": "1",  # the daemon owns one core
            }
        )
        if output is not None:
            env["STREAMAE_OUTPUT__SCORES"] = output
        env.update(extra)
        return env


def pinned(cpus: set[int] | None) -> Any:
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


class Daemon:
    """``python -m streamae serve`` in a process of its own (pinned to ``cpus``), its log in a file."""

    def __init__(
        self,
        run: Run,
        bundle: Path,
        backend: str,
        output: str | None = None,
        extra: dict[str, str] | None = None,
        cpus: set[int] | None = None,
        tag: str = "",
    ) -> None:
        self.log_path = WORK / "logs" / f"{run.name}{tag}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115  # closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamae", "serve"],
            env=run.env(bundle, backend, output, extra or {}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=WORK,  # no stray .env
            preexec_fn=pinned(cpus),
        )
        self.ready: float | None = None  # seconds from start to "serving" in the log
        self.rss: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self.cpu_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def tick(self) -> None:
        """Sample memory and CPU; note when the daemon says it serves. Raise if it died."""
        now = time.monotonic() - self.started
        if (rss := rss_mib(self.pid)) is not None:
            self.rss.append((now, rss))
        if (cpu := cpu_seconds(self.pid)) is not None:
            self.cpu_s = cpu
        if self.ready is None and b" serving " in self.log_path.read_bytes():
            self.ready = now
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


class Commits:
    """The group's ``scored_through`` per input partition (-1: nothing committed yet)."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaAdminClient  # the daemon's own reader needs a group member

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)

    def scored_through(self, group: str, topic: str) -> dict[int, int]:
        try:
            offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        except Exception:  # the coordinator moves or is not there yet: ask again next tick
            return {}
        return {
            tp.partition: scored_through(Offset(om.offset, om.metadata), f"{group} {tp}")
            for tp, om in offsets.items()
            if tp.topic == topic and om.metadata
        }

    def close(self) -> None:
        self.admin.close()


def wait_until_scored(
    daemons: Sequence[Daemon],
    commits: Commits,
    run: Run,
    last: dict[int, int],
    timeout_s: float,
    every_s: float = 0.1,
) -> float:
    """Seconds from the first daemon's start until the group has committed outputs through
    ``last[p]`` on every partition ``p``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for d in daemons:
            d.tick()
        through = commits.scored_through(run.group, run.input_topic)
        if all(through.get(p, -1) >= off for p, off in last.items()):
            return time.monotonic() - daemons[0].started
        time.sleep(every_s)
    raise TimeoutError(f"not scored within {timeout_s:g} s; last commits {through}, want {last}")


def backlog_run(
    bootstrap: str,
    topic: str,
    ends: dict[int, int],
    bundle_dir: Path,
    backend: str,
    output: str | None = None,
    extra: dict[str, str] | None = None,
    processes: int = 1,
    cpus: Sequence[set[int] | None] = (None,),
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """The daemon (``processes`` members of one fresh group) over the whole preloaded
    ``topic``: process start → every output acknowledged and committed."""
    run = Run(bootstrap, topic)
    run.create()
    commits = Commits(bootstrap)
    daemons = []
    try:
        for i in range(processes):
            daemons.append(Daemon(run, bundle_dir, backend, output, extra, cpus[i % len(cpus)], f"-{i}"))
        elapsed = wait_until_scored(daemons, commits, run, {p: e - 1 for p, e in ends.items()}, timeout_s)
        for d in daemons:
            d.tick()
        n = sum(ends.values())
        ready = (
            min(d.ready for d in daemons if d.ready is not None) if all(d.ready for d in daemons) else None
        )
        out: dict[str, Any] = {
            "readings": n,
            "elapsed_s": elapsed,
            "msgs_per_s": n / elapsed,
            "ready_s": ready,
            "steady_msgs_per_s": n / (elapsed - ready) if ready else None,
            "cpu_s": sum(d.cpu_s or 0 for d in daemons),
            "rss_peak_mib": max((r for d in daemons for _, r in d.rss), default=None),
            "scores": sum(end_offsets(bootstrap, run.scores_topic).values()),
        }
        return out
    finally:
        codes = [d.stop() for d in daemons]
        commits.close()
        if any(codes):
            print(f"  (a daemon exited with {codes}; log {daemons[0].log_path})", file=sys.stderr)
        run.drop()


# -- latency at a fixed rate -----------------------------------------------------------


def score_latencies(bootstrap: str, topic: str, since: float) -> np.ndarray:
    """Milliseconds from each window's last reading being produced (its ``window_end``, the
    producer's wall clock) to the broker appending its score (LogAppendTime), for windows
    ending after ``since``."""
    from kafka import KafkaConsumer, TopicPartition

    ends = end_offsets(bootstrap, topic)
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, max_poll_records=5000
    )
    out: list[float] = []
    try:
        parts = [TopicPartition(topic, p) for p in ends]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        seen = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 300
        while any(seen[p] < e for p, e in ends.items()) and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=500).items():
                seen[tp.partition] = records[-1].offset + 1
                for r in records:
                    for end in window_ends(orjson.loads(r.value)):
                        if end >= since:
                            out.append(r.timestamp - 1000 * end)
    finally:
        c.close()
    return np.asarray(out)


class Follower:
    """A ``read_committed`` reader of a scores topic on a thread of its own, stamping each
    score with the wall-clock time it became readable: the latency of exactly-once outputs,
    visible only once their transaction commits (their append time is earlier)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        import threading

        self.bootstrap, self.topic = bootstrap, topic
        self.seen: list[tuple[float, float]] = []  # (readable at, window_end)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=5,  # the reader's own wait would count as latency
            max_poll_records=5000,
        )
        try:
            while not c.partitions_for_topic(self.topic) and not self._stop.is_set():
                time.sleep(0.05)
            parts = [TopicPartition(self.topic, p) for p in c.partitions_for_topic(self.topic) or ()]
            c.assign(parts)
            c.seek_to_beginning(*parts)
            while not self._stop.is_set():
                for records in c.poll(timeout_ms=50).values():
                    now = time.time()
                    self.seen += [(now, e) for r in records for e in window_ends(orjson.loads(r.value))]
        finally:
            c.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def latencies(self, since: float) -> np.ndarray:
        """Milliseconds from window end to readable, for windows ending after ``since``."""
        time.sleep(1.0)  # the last transaction's scores, committed just now
        self.close()
        return np.asarray([1000 * (at - end) for at, end in self.seen if end >= since])


def window_ends(doc: Any) -> list[float]:
    """``window_end`` of every window in a score message: one per message by default, a list
    in a batch message (whatever its exact shape; best effort)."""
    if isinstance(doc, list):
        return [e for d in doc for e in window_ends(d)]
    if not isinstance(doc, dict):
        return []
    end = doc.get("window_end")
    if isinstance(end, (int, float)):
        return [float(end)]
    if isinstance(end, list):
        return [float(e) for e in end]
    return [e for v in doc.values() if isinstance(v, (dict, list)) for e in window_ends(v)]


def warmup_s(rate: float, n_keys: int) -> float:
    """Seconds of paced load before latencies count: until every key has filled its first
    window, with a margin (and at least 5 s)."""
    return max(5.0, 1.5 * WINDOW * n_keys / rate)


def paced_run(
    bootstrap: str,
    bundle_dir: Path,
    backend: str,
    rate: float,
    duration_s: float,
    warmup_s: float,
    n_keys: int = 1000,
    output: str | None = None,
    extra: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    producer_cpus: set[int] | None = None,
    stall: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The daemon on a fresh topic fed at ``rate`` readings/s for ``duration_s``: latency
    percentiles of windows ending after the warm-up, what it kept up with, and its memory over
    time. ``stall``: ``{"at_s", "for_s", "how"}`` stalls the outputs during the run (``how``:
    ``broker`` pauses the broker process with SIGSTOP; ``quota`` throttles the daemon's
    producer to 1 KiB/s with a client quota, leaving its consumer alone)."""
    topic = f"paced-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    run = Run(bootstrap, topic)
    run.create()
    metrics_port = free_port()
    d = Daemon(
        run, bundle_dir, backend, output, {**(extra or {}), "STREAMAE_METRICS_PORT": str(metrics_port)}, cpus
    )
    commits = Commits(bootstrap)
    # exactly-once outputs are visible at their commit, not at their append: follow them
    transactional = (extra or {}).get("STREAMAE_KAFKA__DELIVERY") == "exactly_once"
    follower = Follower(bootstrap, run.scores_topic) if transactional else None
    stalled: list[str] = []
    pacer: subprocess.Popen[bytes] | None = None
    load_at = None
    try:
        while d.ready is None:
            d.tick()
            time.sleep(0.05)
        started = time.time()
        load_at = time.monotonic() - d.started
        args = {"bootstrap": bootstrap, "topic": topic, "rate": rate, "seconds": duration_s, "keys": n_keys}
        pacer = subprocess.Popen(
            [sys.executable, __file__, "pace", json.dumps(args)],
            stdout=subprocess.PIPE,
            preexec_fn=pinned(producer_cpus),
        )
        stall_done = stall is None
        while pacer.poll() is None:
            d.tick()
            if not stall_done and stall and time.time() - started >= stall["at_s"]:
                stalled.append(_stall(bootstrap, run, stall, d))
                stall_done = True
            time.sleep(0.1)
        sent = json.loads(pacer.communicate()[0].splitlines()[-1])
        ends = end_offsets(bootstrap, topic)
        wait_until_scored([d], commits, run, {p: e - 1 for p, e in ends.items()}, 120)
        drained = time.time()
        loop = daemon_metrics(metrics_port)
        if follower is not None:
            lat = follower.latencies(started + warmup_s)
        else:
            lat = score_latencies(bootstrap, run.scores_topic, started + warmup_s)
        q = np.percentile(lat, [50, 95, 99, 100]) if len(lat) else [float("nan")] * 4
        return {
            "rate": rate,
            "sent_per_s": sent.get("rate"),
            "readings": sent.get("sent"),
            "windows_measured": len(lat),
            "p50_ms": q[0],
            "p95_ms": q[1],
            "p99_ms": q[2],
            "max_ms": q[3],
            "drain_s": drained - started - duration_s,
            "load_at_s": load_at,
            "rss": d.rss,
            "stall": stalled,
            **loop,
        }
    except (RuntimeError, TimeoutError) as exc:  # the daemon died or fell behind for good
        alive = d.proc.poll() is None
        return {
            "rate": rate,
            "error": str(exc),
            "alive": alive,
            "rss": d.rss,
            "stall": stalled,
            "load_at_s": load_at,
        }
    finally:
        if pacer is not None and pacer.poll() is None:
            pacer.kill()
            pacer.wait()
        if follower is not None:
            follower.close()
        d.stop()
        commits.close()
        run.drop()
        delete_topics(bootstrap, [topic])


def daemon_metrics(port: int) -> dict[str, float]:
    """From the daemon's Prometheus endpoint: commits, micro-batches and their mean duration."""
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in {
            "streamae_commit_seconds_sum",
            "streamae_commit_seconds_count",
            "streamae_flush_seconds_sum",
            "streamae_flush_seconds_count",
        }:
            values[name] = float(value)
    out = {}
    for what in ("commit", "flush"):
        n = values.get(f"streamae_{what}_seconds_count", 0.0)
        out[{"commit": "commits", "flush": "flushes"}[what]] = n
        if n:
            out[f"{what}_mean_ms"] = 1000 * values[f"streamae_{what}_seconds_sum"] / n
    return out


def _stall(bootstrap: str, run: Run, stall: dict[str, Any], d: Daemon) -> str:
    """Stall the outputs for ``stall["for_s"]`` while sampling the daemon; what was done."""
    until = time.monotonic() + stall["for_s"]
    if stall["how"] == "broker":
        os.kill(stall["pid"], signal.SIGSTOP)
        try:
            while time.monotonic() < until:
                with contextlib.suppress(RuntimeError):
                    d.tick()
                time.sleep(0.2)
        finally:
            os.kill(stall["pid"], signal.SIGCONT)
        return f"broker paused (SIGSTOP) for {stall['for_s']:g} s"
    client = "streamae"  # the daemon's STREAMAE_KAFKA__CLIENT_ID (its consumer is not throttled)
    client_quota(bootstrap, client, producer_byte_rate=1024)
    try:
        while time.monotonic() < until:
            d.tick()
            time.sleep(0.2)
    finally:
        client_quota(bootstrap, client, producer_byte_rate=None)
    return f"the daemon's producer throttled to 1 KiB/s (client quota) for {stall['for_s']:g} s"


def client_quota(bootstrap: str, client_id: str, **quotas: int | None) -> None:
    """Set (or, with None, remove) client quotas with Kafka's own ConfigCommand (kafka-python
    has no client-quota call): the JVM tools of the cached broker."""
    import re

    version = re.search(r"<kafka.version>(.*)</kafka.version>", (ROOT / "deploy/kafka/pom.xml").read_text())
    assert version, "deploy/kafka/pom.xml names no kafka.version"
    cache = Path(os.environ.get("STREAMAE_KAFKA_CACHE", Path.home() / f".cache/streamae/kafka-{version[1]}"))
    add = ",".join(f"{k}={v}" for k, v in quotas.items() if v is not None)
    delete = ",".join(k for k, v in quotas.items() if v is None)
    change = ["--add-config", add] if add else ["--delete-config", delete]
    subprocess.run(
        [
            *("java", "-cp", f"{cache}/libs/*", "kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap),
            *("--alter", "--entity-type", "clients", "--entity-name", client_id, *change),
        ],
        check=True,
        capture_output=True,
    )


# -- workers: each runs in a process of its own ----------------------------------------


def run_worker(
    name: str, args: dict[str, Any], cpus: set[int] | None, timeout_s: float = 1800
) -> dict[str, Any]:
    """Run one worker in a fresh interpreter (pinned to ``cpus``); its JSON result."""
    proc = subprocess.run(
        [sys.executable, __file__, name, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        preexec_fn=pinned(cpus),
        cwd=ROOT,
    )
    if proc.returncode:
        raise RuntimeError(f"worker {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _kafka_python_records(a: dict[str, Any]) -> Iterator[tuple[Any, list[Any]]]:
    """(partition, records) batches of ``a["topic"]`` from the beginning, no group, until ``a["n"]`` seen."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=a["bootstrap"],
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=a.get("max_poll_records", 2000),
    )
    parts = [TopicPartition(a["topic"], p) for p in range(a["partitions"])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    n = 0
    while n < a["n"]:
        for tp, records in c.poll(timeout_ms=1000).items():
            n += len(records)
            yield tp, records
    c.close()


def _confluent_records(a: dict[str, Any]) -> Iterator[list[Any]]:
    """Batches of ``consume(1000)`` from the beginning of ``a["topic"]`` until ``a["n"]`` seen."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": a["bootstrap"],
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",  # required; nothing is committed
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(a["topic"], p, OFFSET_BEGINNING) for p in range(a["partitions"])])
    n = 0
    while n < a["n"]:
        msgs = [m for m in c.consume(1000, 1.0) if m.error() is None]
        n += len(msgs)
        yield msgs
    c.close()


def worker_raw(a: dict[str, Any]) -> dict[str, Any]:
    """Bare consume (``client``: kafka-python or confluent), optionally + decode."""
    decoder = None
    if a.get("decode"):
        from streamae.serving.decode import ReadingDecoder
        from streamae.serving.transport import Record

        decoder = ReadingDecoder(FEATURES)
    t = time.perf_counter()
    cpu = time.process_time()
    n = decoded = 0
    if a["client"] == "kafka-python":
        for tp, records in _kafka_python_records(a):
            n += len(records)
            if decoder is not None:
                decoded += len(decoder.decode(records, tp.topic, tp.partition)[0])
    else:
        for msgs in _confluent_records(a):
            n += len(msgs)
            if decoder is not None:
                per: dict[int, list[Any]] = {}
                for m in msgs:  # what a transport hands the loop: our Record, per partition
                    per.setdefault(m.partition(), []).append(
                        Record(m.topic(), m.partition(), m.offset(), m.key(), m.value())
                    )
                for p, records in per.items():
                    decoded += len(decoder.decode(records, a["topic"], p)[0])
    elapsed = time.perf_counter() - t
    return {
        "n": n,
        "decoded": decoded,
        "elapsed_s": elapsed,
        "rate": n / elapsed,
        "cpu_s": time.process_time() - cpu,
    }


def worker_naive(a: dict[str, Any]) -> dict[str, Any]:
    """The naive baseline: one message at a time, ``json.loads``, a per-key list as the
    window, a PyTorch forward per window, a synchronous produce (``.get()``) per score.

    Readings ``1 .. warm`` only fill the windows; readings ``warm+1 .. warm+n`` each complete
    a window and are timed (the whole stream would take as long per reading, bar the first
    ``window - 1`` of each key)."""
    from collections import deque

    import torch
    from kafka import KafkaConsumer, KafkaProducer

    from streamae.core.bundle import load_bundle
    from streamae.training.models import build_model

    torch.set_num_threads(1)
    b = load_bundle(a["bundle"])
    m = b.manifest
    model = build_model(m.variant, m.window, len(m.features))
    model.load_state_dict(torch.load(a["weights"]))
    model.eval()
    mean, scale, threshold = list(m.scaler.mean), list(m.scaler.scale), m.threshold.value
    consumer = KafkaConsumer(
        a["topic"],
        bootstrap_servers=a["bootstrap"],
        group_id=f"naive-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    producer = KafkaProducer(bootstrap_servers=a["bootstrap"], acks="all")
    windows: dict[str, deque[list[float]]] = {}
    timed = scored = 0
    t = cpu = 0.0
    for seen, msg in enumerate(consumer, 1):
        if seen == a["warm"] + 1:
            t, cpu = time.perf_counter(), time.process_time()
        doc = json.loads(msg.value)
        row = [(float(doc["values"][f]) - mu) / s for f, mu, s in zip(m.features, mean, scale)]
        w = windows.setdefault(doc["key"], deque(maxlen=m.window))
        w.append(row)
        if len(w) == m.window:
            with torch.no_grad():
                x = torch.tensor([list(w)], dtype=torch.float32)
                recon = model(x)[0]
                score = float(((recon - x) ** 2).mean())
            out = {
                "key": doc["key"],
                "window_end": doc["ts"],
                "score": score,
                "threshold": threshold,
                "is_anomaly": score > threshold,
            }
            producer.send(a["out_topic"], key=doc["key"].encode(), value=json.dumps(out).encode()).get(
                timeout=30
            )
            scored += 1
        if seen > a["warm"]:
            timed += 1
            if timed == a["n"]:
                break
    elapsed = time.perf_counter() - t
    result = {
        "n": timed,
        "scored": scored,
        "elapsed_s": elapsed,
        "rate": timed / elapsed,
        "cpu_s": time.process_time() - cpu,
    }
    consumer.close()
    producer.close()
    return result


def worker_pace(a: dict[str, Any]) -> dict[str, Any]:
    """Produce readings of ``a["keys"]`` keys at ``a["rate"]``/s for ``a["seconds"]``, each
    stamped with the wall-clock time it is sent (``ts``): the event time is the produce time."""
    rate, seconds = float(a["rate"]), float(a["seconds"])
    # the readings to send, made before the clock starts: a day at most, sent round again
    # when the run is longer
    steps = min(DAY_STEPS, int(rate * seconds / a["keys"]) + 1)
    frame = readings(a["keys"], steps, seed=7)
    keys = frame["key"].tolist()[: a["keys"]]
    rows = [dict(zip(FEATURES, r)) for r in frame[list(FEATURES)].to_numpy().tolist()]
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": a["bootstrap"],
            "linger.ms": 1,
            "acks": "all",
            "enable.idempotence": bool(a.get("idempotent")),  # no input twice across broker restarts
        }
    )

    def send(key: str, value: bytes) -> None:
        while True:
            try:
                p.produce(a["topic"], value, key.encode())
                return
            except BufferError:
                p.poll(0.01)

    n = 0
    t0 = time.time()
    while True:
        now = time.time()
        if now - t0 >= seconds:
            break
        target = int(rate * (now - t0))
        while n < target:
            key = keys[n % len(keys)]
            send(key, orjson.dumps({"key": key, "ts": time.time(), "values": rows[n % len(rows)]}))
            n += 1
        p.poll(0)
        time.sleep(0.0005)
    p.flush(120)
    elapsed = time.time() - t0
    return {"sent": n, "elapsed_s": elapsed, "rate": n / elapsed}


WORKERS = {"raw": worker_raw, "naive": worker_naive, "pace": worker_pace}

if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(WORKERS[sys.argv[1]](json.loads(sys.argv[2]))))
