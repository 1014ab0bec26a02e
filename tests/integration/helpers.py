"""Helpers for tests against the real broker: produce, read back, run a daemon in a thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from kafka import KafkaConsumer, TopicPartition

from streamae.core.bundle import load_bundle
from streamae.core.config import KafkaSettings, Settings
from streamae.core.offline import score_frame
from streamae.core.scoring import Scorer
from streamae.serving.assembly import build_daemon
from streamae.serving.clients.admin import follow
from streamae.serving.clients.kafka_python import KafkaPythonTransport, client_configs
from streamae.serving.commit.checkpoint import scored_through
from streamae.serving.transport import Offset, Partition


def settings_for(
    bootstrap: str, topics: dict[str, str], backend: str = "kafka-python", **sections: Any
) -> Settings:
    # A member whose LeaveGroup is lost (seen under load: UnknownMemberId) holds the group
    # until its session expires; the 45 s default would eat a test's whole read timeout.
    kafka = {
        "bootstrap_servers": bootstrap,
        "session_timeout_ms": 10000,
        "backend": backend,
        **topics,
        **sections.pop("kafka", {}),
    }
    return Settings(
        kafka=kafka,
        batch={"max_wait_ms": 100, **sections.pop("batch", {})},
        model={"providers": ["CPUExecutionProvider"], **sections.pop("model", {})},
        **sections,
    )


class Stall:
    """A deadline that moves while there is progress: waits under load take as long as the
    work does, and fail only when nothing moves for ``stall_s`` (naming what stopped)."""

    def __init__(self, what: str, stall_s: float) -> None:
        self.what, self.stall_s = what, stall_s
        self._value: object = object()
        self._at = time.monotonic()

    def stalled(self, value: object) -> bool:
        now = time.monotonic()
        if value != self._value:
            self._value, self._at = value, now
        return now - self._at > self.stall_s

    def check(self, value: object) -> None:
        if self.stalled(value):
            raise TimeoutError(f"{self.what}: no progress for {self.stall_s:g} s (last: {value})")


def read_topic(
    k: KafkaSettings, topic: str, until: Callable[[list[dict]], bool] | int, stall_s: float = 60
) -> list[dict]:
    """Every message of ``topic`` from the beginning, decoded, once ``until`` holds; fails
    when no new message came for ``stall_s`` before it did."""
    stop = until if callable(until) else (lambda docs: len(docs) >= until)
    docs: list[dict] = []
    stall = Stall(f"reading {topic}", stall_s)
    for _, doc in follow(k, [topic], lambda: stop(docs) or stall.stalled(len(docs)), timeout_s=1e9):
        docs.append(doc)
    if not stop(docs):
        raise TimeoutError(f"{topic}: {len(docs)} messages, none new for {stall_s:g} s, wait not over")
    return docs


def read_records(k: KafkaSettings, topic: str, n: int, stall_s: float = 60) -> list[Any]:
    """The first ``n`` records of ``topic`` as kafka-python hands them (key, value, headers)."""
    consumer = KafkaConsumer(**client_configs(k), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        stall = Stall(f"reading {n} records of {topic}", stall_s)
        while len(records) < n:
            stall.check(len(records))
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def read_to_end(
    k: KafkaSettings, topic: str, stall_s: float = 30, isolation_level: str = "read_uncommitted"
) -> list[dict]:
    """Every message ``topic`` holds now (up to its end offsets), decoded: a complete read,
    not one that stops after a while. ``read_committed``: only committed transactions (the
    end is then the last stable offset)."""
    consumer = KafkaConsumer(
        **client_configs(k), enable_auto_commit=False, group_id=None, isolation_level=isolation_level
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = consumer.end_offsets(parts)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        docs: list[dict] = []
        stall = Stall(f"reading {topic} to its end {end}", stall_s)
        while True:
            positions = {tp.partition: consumer.position(tp) for tp in parts}
            if all(positions[tp.partition] >= end[tp] for tp in parts):
                return docs
            stall.check(positions)
            for tp, records in consumer.poll(timeout_ms=200).items():
                docs.extend(orjson.loads(r.value) for r in records if r.offset < end[tp])
    finally:
        consumer.close()


class Served:
    """``streamae serve --bundle BUNDLE ARGS`` as a user starts it: a process of its own,
    configured from ``STREAMAE_*`` variables (``env`` adds some, e.g.
    ``STREAMAE_KAFKA__DELIVERY="exactly_once"``), its output in ``cwd/serve-<n>.log``. Leaving
    the ``with`` block kills a process that is still running (the test failed before stop)."""

    def __init__(
        self,
        bootstrap: str,
        topics: dict[str, str],
        bundle: Path,
        cwd: Path,
        *args: str,
        backend: str = "kafka-python",
        **env: str,
    ) -> None:
        self._start = lambda: _serve_process(bootstrap, topics, bundle, cwd, *args, backend=backend, **env)
        self.proc = self._start()

    def kill_and_restart(self) -> None:
        """SIGKILL (no drain, no commit), then a new process with the same configuration."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc = self._start()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM (the daemon drains and commits), then its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _serve_process(
    bootstrap: str, topics: dict[str, str], bundle: Path, cwd: Path, *args: str, backend: str, **env: str
) -> subprocess.Popen:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
    variables.update({f"STREAMAE_KAFKA__{k.upper()}": v for k, v in topics.items()})
    variables.update(
        STREAMAE_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        STREAMAE_KAFKA__BACKEND=backend,
        STREAMAE_MODEL__PROVIDERS='["CPUExecutionProvider"]',
        **env,
    )
    log = (cwd / f"serve-{time.monotonic_ns()}.log").open("w")
    cmd = [sys.executable, "-m", "streamae", "serve", "--bundle", str(bundle), *args]
    return subprocess.Popen(cmd, env=variables, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def serve_logs(cwd: Path) -> str:
    """Everything the :class:`Served` processes run in ``cwd`` wrote, oldest first."""
    return "".join(p.read_text() for p in sorted(cwd.glob("serve-*.log")))


class DaemonThread:
    """A daemon serving ``bundle``, built as ``streamae serve`` builds it, in a background
    thread; ``close()`` stops it and re-raises its failure."""

    def __init__(self, settings: Settings, bundle: Path, create_topics: bool = True) -> None:
        model = settings.model.model_copy(update={"bundle": bundle})
        self.daemon = build_daemon(settings.model_copy(update={"model": model}), create_topics=create_topics)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def assigned(self) -> frozenset[Partition]:
        """Partitions this member holds now (the daemon's thread-safe snapshot)."""
        return self.daemon.assigned()

    def close(self, timeout_s: float = 120) -> None:
        # draining may wait out a request timeout (30 s) and, after an outage, a transaction
        # abort on top: on a loaded 2-core CI machine 60 s was seen to be too short
        self.daemon.stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "daemon did not stop"
        if self.error is not None:
            raise self.error

    def __enter__(self) -> DaemonThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(
    condition: Callable[[], bool], stall_s: float = 60, progress: Callable[[], object] | None = None
) -> None:
    """Wait for ``condition``: at most ``stall_s`` without a change of ``progress()`` (without
    ``progress``, at most ``stall_s`` in all)."""
    stall = Stall(getattr(condition, "__name__", "condition"), stall_s)
    while not condition():
        stall.check(progress() if progress is not None else None)
        time.sleep(0.1)


def committed(k: KafkaSettings, topic: str) -> dict[int, Offset | None]:
    """The group's committed offset (with metadata) per partition of ``topic`` (None if none)."""
    transport = KafkaPythonTransport(k.model_copy(update={"delivery": "at_least_once"}))
    try:
        parts = [Partition(topic, p) for p in sorted(transport.partitions_for_topic(topic))]
        return {p.partition: c for p, c in transport.committed(parts).items()}
    finally:
        transport.close()


def commit_marks(k: KafkaSettings) -> dict[int, tuple[int, int]]:
    """Per input partition: ``scored_through`` of the group's commit and the last offset."""
    consumer = KafkaConsumer(**client_configs(k), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(k.input_topic, p) for p in consumer.partitions_for_topic(k.input_topic) or ()]
        end = consumer.end_offsets(parts)
    finally:
        consumer.close()
    marks = committed(k, k.input_topic)
    return {tp.partition: (scored_through(marks[tp.partition]), end[tp] - 1) for tp in parts}


def all_published_and_committed(k: KafkaSettings) -> bool:
    """Whether the group committed, for every input partition, that the outputs of all its
    records are published (``scored_through`` at its last offset)."""
    return all(done >= last for done, last in commit_marks(k).values())


def wait_published_and_committed(k: KafkaSettings, stall_s: float | None = None) -> None:
    """Wait until :func:`all_published_and_committed`, failing only when the group's commits
    stop moving for ``stall_s`` (a stalled member), not after a fixed time. The default is the
    longest quiet spell the daemon itself allows: an evicted member is noticed after the
    session timeout, and acks are waited for up to the request timeout twice before it
    rejoins and aborts (plus 30 s to rejoin on a loaded machine)."""
    if stall_s is None:
        stall_s = (k.session_timeout_ms + 2 * k.request_timeout_ms) / 1000 + 30
    stall = Stall(f"the commits of group {k.group_id} (scored through, last offset)", stall_s)
    while True:
        marks = commit_marks(k)
        if all(done >= last for done, last in marks.values()):
            return
        stall.check(marks)
        time.sleep(0.2)


def expected_windows(frame: pd.DataFrame, window: int = 20) -> int:
    return int(sum(max(0, n - window + 1) for n in frame.groupby("key").size()))


def offline_scores(bundle_dir: Path, frame: pd.DataFrame) -> pd.DataFrame:
    scorer = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"])
    return score_frame(frame, scorer, "file")


def assert_same_scores(daemon_scores: list[dict], offline: pd.DataFrame) -> None:
    """Every window scored once, as offline scoring scores it."""
    got = pd.DataFrame(daemon_scores)[["key", "window_end", "score", "is_anomaly"]]
    assert not got.duplicated(["key", "window_end"]).any(), "a window was published twice"
    merged = offline.merge(
        got, on=["key", "window_end"], how="outer", indicator=True, suffixes=("_offline", "_daemon")
    )
    assert (merged["_merge"] == "both").all(), merged["_merge"].value_counts()
    np.testing.assert_allclose(merged["score_daemon"], merged["score_offline"], rtol=1e-5)
    assert (merged["is_anomaly_daemon"] == merged["is_anomaly_offline"]).all()


def window_ends_expected(k: KafkaSettings, window: int = 20) -> set[tuple[int, int]]:
    """``(partition, offset)`` of every input record that completes a window: what the input
    topic holds now (one reading per record, in partition order), whatever was sent twice."""
    consumer = KafkaConsumer(**client_configs(k), enable_auto_commit=False, group_id=None)
    try:
        parts = [
            TopicPartition(k.input_topic, p) for p in sorted(consumer.partitions_for_topic(k.input_topic))
        ]
        end = consumer.end_offsets(parts)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        seen: dict[tuple[int, str], int] = {}
        ends: set[tuple[int, int]] = set()
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    if r.offset >= end[tp]:
                        continue
                    key = (tp.partition, orjson.loads(r.value)["key"])
                    seen[key] = seen.get(key, 0) + 1
                    if seen[key] >= window:
                        ends.add((tp.partition, r.offset))
        return ends
    finally:
        consumer.close()
