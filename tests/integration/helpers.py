"""Helpers for tests against the real broker: produce, read back, run a daemon in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from streamae.core.bundle import load_bundle
from streamae.core.config import KafkaSettings, Settings
from streamae.core.scoring import Scorer
from streamae.serving.kafka_python import ensure_daemon_topics, follow, make_consumer, make_producer
from streamae.serving.loop import Daemon


def settings_for(bootstrap: str, topics: dict[str, str], **sections: Any) -> Settings:
    # A member whose LeaveGroup is lost (seen under load: UnknownMemberId) holds the group
    # until its session expires; the 45 s default would eat a test's whole read timeout.
    kafka = {"bootstrap_servers": bootstrap, "session_timeout_ms": 10000, **topics}
    return Settings(
        kafka=kafka,
        batch={"max_wait_ms": 100, **sections.pop("batch", {})},
        model={"providers": ["CPUExecutionProvider"]},
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


class DaemonThread:
    """A daemon in a background thread; ``close()`` stops it and re-raises its failure."""

    def __init__(self, settings: Settings, bundle: Path, create_topics: bool = True) -> None:
        k = settings.kafka
        if create_topics:
            ensure_daemon_topics(k)
        scorer = Scorer(load_bundle(bundle), ["CPUExecutionProvider"])
        self.daemon = Daemon(settings, scorer, make_consumer(k), make_producer(k))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def assigned(self) -> set:
        """Partitions this member holds now (read from the test thread; a snapshot)."""
        return set(self.daemon.consumer.assignment())

    def close(self, timeout_s: float = 60) -> None:
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


def committed(k: KafkaSettings, topic: str) -> dict[int, Any]:
    """The group's committed OffsetAndMetadata per partition of ``topic`` (None if none)."""
    consumer = make_consumer(k)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: consumer.committed(TopicPartition(topic, p), metadata=True) for p in parts}
    finally:
        consumer.close(autocommit=False)
