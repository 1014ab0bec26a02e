"""Exactly-once against the real broker, on each client library: ``streamae serve`` killed
with SIGKILL mid-stream, again and again, and restarted; a member joining and leaving mid-stream;
a read_committed reader sees every window and every dead letter exactly once."""

from __future__ import annotations

import collections
import random
import time

import orjson
import pytest
from helpers import (
    DaemonThread,
    Served,
    expected_windows,
    read_to_end,
    serve_logs,
    settings_for,
    wait_published_and_committed,
    wait_until,
)

from streamae.demo.simulate import to_messages
from streamae.serving.clients.admin import ensure_daemon_topics, publish

pytestmark = pytest.mark.kafka

KILLS = 4


def test_sigkill_mid_stream_and_restarts_lose_nothing_and_repeat_nothing(
    kafka_bootstrap, topics, bundle_dir, make_stream, backend, tmp_path, record_property
):
    s = settings_for(kafka_bootstrap, topics, backend, kafka={"delivery": "exactly_once"})
    k = s.kafka
    ensure_daemon_topics(k)
    frame = make_stream(hours=8, anomalies=1, seed=32, entities=4).frame
    msgs = list(to_messages(frame))
    bad = [(b"machine-01", b"{oops"), (None, orjson.dumps({"ts": 1, "values": {}}))]
    chunks = [
        msgs[i : i + len(msgs) // (KILLS + 1) + 1] for i in range(0, len(msgs), len(msgs) // (KILLS + 1) + 1)
    ]
    chunks[1] = chunks[1][:10] + bad + chunks[1][10:]
    rng = random.Random(7)
    eos = {
        "STREAMAE_KAFKA__DELIVERY": "exactly_once",
        "STREAMAE_KAFKA__SESSION_TIMEOUT_MS": "10000",  # a killed member's partitions come back sooner
    }
    with Served(kafka_bootstrap, topics, bundle_dir, tmp_path, backend=backend, **eos) as served:
        for chunk in chunks[:-1]:
            publish(k, chunk)
            time.sleep(rng.uniform(4, 9))  # mid-stream: some of it scored, some not
            served.kill_and_restart()
        publish(k, chunks[-1])
        wait_published_and_committed(k)
        assert served.stop() == 0
    logs = serve_logs(tmp_path)
    assert "Traceback" not in logs, logs[-3000:]
    scores = read_to_end(k, k.scores_topic, isolation_level="read_committed")
    dead = read_to_end(k, k.dlq_topic, isolation_level="read_committed")
    counts = collections.Counter((d["source"]["partition"], d["source"]["offset_end"]) for d in scores)
    n = expected_windows(frame)
    lost, duplicated = n - len(counts), sum(c - 1 for c in counts.values())
    record_property(
        "sigkill", {"inputs": len(msgs) + len(bad), "windows": n, "lost": lost, "dup": duplicated}
    )
    print(
        f"exactly-once {backend}: {KILLS} kills, {len(msgs)} readings + {len(bad)} bad, {n} windows, "
        f"{len(scores)} score messages, {lost} lost, {duplicated} twice, {len(dead)} dead letters"
    )
    assert (lost, duplicated) == (0, 0)
    assert sorted(d["offset"] for d in dead) == sorted({d["offset"] for d in dead}) and len(dead) == len(bad)
    # an uncommitted reader would see the aborted attempts: the kills did interrupt transactions
    assert len(read_to_end(k, k.scores_topic)) >= len(scores)


def test_a_member_joining_and_leaving_mid_stream_repeats_nothing_for_a_committed_reader(
    kafka_bootstrap, topics, bundle_dir, make_stream, backend, record_property, cpu_hog
):
    """Two rebalances in exactly-once mode: B joins while A holds unpublished windows (a long
    max wait), then B leaves while records keep coming, with a busy process on every core;
    a read_committed reader sees every window once, whoever scored it."""
    s = settings_for(kafka_bootstrap, topics, backend, kafka={"delivery": "exactly_once"})
    s_a = settings_for(
        kafka_bootstrap, topics, backend, kafka={"delivery": "exactly_once"}, batch={"max_wait_ms": 15_000}
    )
    k = s.kafka
    frame = make_stream(hours=4, anomalies=0, seed=33, entities=6).frame
    msgs = list(to_messages(frame))
    third = len(msgs) // 3
    with DaemonThread(s_a, bundle_dir) as a:
        publish(k, msgs[:third])
        wait_until(lambda: a.daemon.stats.readings > 0)
        with DaemonThread(s, bundle_dir) as b:
            wait_until(lambda: b.assigned() and len(a.assigned()) < 3)
            publish(k, msgs[third : 2 * third])
            wait_until(lambda: b.daemon.stats.readings > 0)
        publish(k, msgs[2 * third :])  # B has left: A takes every partition back
        wait_published_and_committed(k)
    scores = read_to_end(k, k.scores_topic, isolation_level="read_committed")
    counts = collections.Counter((d["source"]["partition"], d["source"]["offset_end"]) for d in scores)
    n = expected_windows(frame)
    lost, duplicated = n - len(counts), sum(c - 1 for c in counts.values())
    record_property("rebalance", {"windows": n, "lost": lost, "dup": duplicated})
    print(
        f"exactly-once rebalance {backend}: {n} windows, {len(scores)} messages, "
        f"{lost} lost, {duplicated} twice"
    )
    assert b.daemon.stats.windows > 0
    assert (lost, duplicated) == (0, 0)
