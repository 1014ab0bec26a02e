"""Helpers for tests against the real broker: produce, read back, run a daemon in a thread."""

from __future__ import annotations

import socket
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
from streamae.serving.backends import open_transport
from streamae.serving.checkpoint import scored_through
from streamae.serving.kafka_admin import ensure_daemon_topics, follow
from streamae.serving.kafka_python import KafkaPythonTransport, client_configs
from streamae.serving.loop import Daemon
from streamae.serving.reload import ModelReloader
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


def read_topic(
    k: KafkaSettings, topic: str, until: Callable[[list[dict]], bool] | int, timeout_s: float = 60
) -> list[dict]:
    """Every message of ``topic`` from the beginning, decoded, once ``until`` holds (or timeout)."""
    stop = until if callable(until) else (lambda docs: len(docs) >= until)
    docs: list[dict] = []
    for _, doc in follow(k, [topic], lambda: stop(docs), timeout_s):
        docs.append(doc)
    return docs


def read_records(k: KafkaSettings, topic: str, n: int, timeout_s: float = 60) -> list[Any]:
    """The first ``n`` records of ``topic`` as kafka-python hands them (key, value, headers)."""
    consumer = KafkaConsumer(**client_configs(k), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def read_to_end(
    k: KafkaSettings, topic: str, timeout_s: float = 30, isolation_level: str = "read_uncommitted"
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
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            for tp, records in consumer.poll(timeout_ms=200).items():
                docs.extend(orjson.loads(r.value) for r in records if r.offset < end[tp])
        return docs
    finally:
        consumer.close()


class DaemonThread:
    """A daemon in a background thread; ``close()`` stops it and re-raises its failure."""

    def __init__(self, settings: Settings, bundle: Path, create_topics: bool = True) -> None:
        k = settings.kafka
        if create_topics:
            ensure_daemon_topics(k)
        scorer = Scorer(load_bundle(bundle), ["CPUExecutionProvider"])
        reloader = ModelReloader(bundle, settings, scorer) if settings.model.reload_interval_s else None
        self.daemon = Daemon(settings, scorer, open_transport(settings), reloader=reloader)
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


def wait_until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


def committed(k: KafkaSettings, topic: str) -> dict[int, Offset | None]:
    """The group's committed offset (with metadata) per partition of ``topic`` (None if none)."""
    transport = KafkaPythonTransport(k.model_copy(update={"delivery": "at_least_once"}))
    try:
        parts = [Partition(topic, p) for p in sorted(transport.partitions_for_topic(topic))]
        return {p.partition: c for p, c in transport.committed(parts).items()}
    finally:
        transport.close()


def all_published_and_committed(k: KafkaSettings) -> bool:
    """Whether the group committed, for every input partition, that the outputs of all its
    records are published (``scored_through`` at its last offset)."""
    consumer = KafkaConsumer(**client_configs(k), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(k.input_topic, p) for p in consumer.partitions_for_topic(k.input_topic) or ()]
        end = consumer.end_offsets(parts)
    finally:
        consumer.close()
    marks = committed(k, k.input_topic)
    return all(scored_through(marks[tp.partition]) >= end[tp] - 1 for tp in parts if end[tp])


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
