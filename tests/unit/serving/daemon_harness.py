"""Run a daemon on the in-memory transport: settings, a stop after so many polls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from memory_transport import MemoryTransport

from streamae.core.config import Settings
from streamae.core.scoring import Scorer
from streamae.serving.assembly import build_daemon
from streamae.serving.loop import Daemon
from streamae.serving.transport import Partition

WINDOW = 4  # of the tiny bundle (conftest.py)
TOPICS = {
    "input_topic": "in",
    "scores_topic": "scores",
    "alerts_topic": "alerts",
    "dlq_topic": "dlq",
    "state_topic": "state",
}


def settings(**sections: Any) -> Settings:
    return Settings(
        kafka={**TOPICS, **sections.pop("kafka", {})},
        batch={"max_wait_ms": 100, **sections.pop("batch", {})},
        model={"providers": ["CPUExecutionProvider"], **sections.pop("model", {})},
        **sections,
    )


def run_daemon(
    transport: MemoryTransport,
    scorer: Scorer,
    script: Callable[[MemoryTransport, Daemon], None] | None = None,
    stop_after_polls: int = 60,
    commit_interval_ms: int | None = None,
    commit_every: int | None = None,
    **sections: Any,
) -> Daemon:
    """Run a daemon built as ``streamae serve`` builds it (serving ``scorer``'s bundle unless
    ``model={"bundle": ...}`` names another location) on ``transport``, calling ``script`` at
    every poll, until ``stop_after_polls`` polls (then it drains and returns)."""
    commit = {"commit_interval_ms": commit_interval_ms, "commit_every": commit_every}
    kafka = {k: v for k, v in commit.items() if v is not None} | sections.pop("kafka", {})
    model = {"bundle": scorer.bundle_path, **sections.pop("model", {})}
    s = settings(kafka=kafka, model=model, **sections)
    daemon = build_daemon(s, transport=transport, scorer=scorer, clock=transport.clock)

    def on_poll(t: MemoryTransport) -> None:
        if script is not None:
            script(t, daemon)
        if t.polls >= stop_after_polls:
            daemon.stop()

    transport.on_poll = on_poll
    daemon.run()
    return daemon


IN0 = Partition("in", 0)
IN1 = Partition("in", 1)


def serve_across_a_restart(
    scorer: Scorer, frame: Any, split: int = 2, **sections: Any
) -> tuple[MemoryTransport, dict[int, dict[str, Any]]]:
    """Serve ``frame``'s readings (one record each, partition 0): the first ``1/split`` of them
    by one member, the rest by a new member that must restore the state from the state
    topic. Returns the transport and each score message by the offset of its window's end
    (a window published twice fails)."""
    features = scorer.manifest.features
    rows = frame[["key", "timestamp", *features]].to_numpy().tolist()
    values = [orjson.dumps({"key": k, "ts": ts, "values": dict(zip(features, v))}) for k, ts, *v in rows]
    t = MemoryTransport()
    first = len(values) // split
    for v in values[:first]:
        t.produce("in", 0, None, v)
    run_daemon(t, scorer, **sections)
    for v in values[first:]:
        t.produce("in", 0, None, v)
    run_daemon(MemoryTransport(topics=t.topics, commits=t.commits), scorer, **sections)
    served: dict[int, dict[str, Any]] = {}
    for r in t.records("scores"):
        msg = orjson.loads(r.value)
        assert msg["source"]["offset_end"] not in served  # nothing published twice
        served[msg["source"]["offset_end"]] = msg
    return t, served
