"""Delivery against the real broker, on each client library: restarts, rebalances and
SIGTERM lose no window and publish none twice."""

from __future__ import annotations

import pytest
from helpers import (
    DaemonThread,
    Served,
    assert_same_scores,
    committed,
    expected_windows,
    offline_scores,
    read_topic,
    serve_logs,
    settings_for,
    wait_until,
)
from local_kafka import free_port

from streamae.demo.simulate import to_messages
from streamae.serving.clients.admin import publish

pytestmark = pytest.mark.kafka


def test_restart_loses_no_window_and_publishes_none_twice(
    kafka_bootstrap, topics, bundle_dir, make_stream, backend
):
    s = settings_for(kafka_bootstrap, topics, backend)
    frame = make_stream(hours=4, anomalies=0, seed=26).frame
    msgs = list(to_messages(frame))
    first = frame.iloc[: len(frame) // 3]
    with DaemonThread(s, bundle_dir):
        publish(s.kafka, msgs[: len(first)])
        read_topic(s.kafka, s.kafka.scores_topic, expected_windows(first))
    publish(s.kafka, msgs[len(first) :])
    with DaemonThread(s, bundle_dir) as second:
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame))
    assert len(scores) == expected_windows(frame)
    assert_same_scores(scores, offline_scores(bundle_dir, frame))
    # it replayed the tails of every key to rebuild windows, but published none of them again
    assert second.daemon.stats.readings > len(frame) - len(first)


def test_an_alert_open_across_a_restart_is_closed_by_the_next_instance(
    kafka_bootstrap, topics, bundle_dir, make_stream
):
    s = settings_for(kafka_bootstrap, topics, alerts={"k": 3, "n": 5, "quiet_windows": 5})
    sim = make_stream(hours=10, anomalies=1, seed=23)
    a = next(x for x in sim.anomalies if x.kind == "level_shift")
    msgs = list(to_messages(sim.frame))
    cut = int((sim.frame["timestamp"] <= (a.start + a.end) / 2).sum())  # mid-anomaly

    def alerts_of_key(docs):
        return [d for d in docs if d["key"] == a.key]

    with DaemonThread(s, bundle_dir):
        publish(s.kafka, msgs[:cut])
        first = read_topic(
            s.kafka, s.kafka.alerts_topic, lambda docs: any(d["event"] == "open" for d in alerts_of_key(docs))
        )
    opened = [d for d in alerts_of_key(first) if d["event"] == "open"]
    assert len(opened) == 1 and not any(d["event"] == "close" for d in alerts_of_key(first))

    publish(s.kafka, msgs[cut:])
    with DaemonThread(s, bundle_dir) as second:
        read_topic(s.kafka, s.kafka.scores_topic, expected_windows(sim.frame))
        alerts = read_topic(
            s.kafka,
            s.kafka.alerts_topic,
            lambda docs: any(d["event"] == "close" for d in alerts_of_key(docs)),
        )
    mine = [d for d in alerts_of_key(alerts) if d["start"] <= a.end + 20 * 60]
    assert [d["event"] for d in mine] == ["open", "close"], mine
    assert mine[1]["alert_id"] == opened[0]["alert_id"]
    assert mine[1]["windows"] > opened[0]["windows"]  # the count carried over the restart
    assert second.daemon.stats.alerts_closed >= 1


def split(a: frozenset, b: frozenset, partitions: int = 3) -> bool:
    """Both members hold partitions, none twice, and the topic's 3 (broker default) between them."""
    return bool(a) and bool(b) and not a & b and len(a | b) == partitions


@pytest.mark.parametrize("a_wait_ms", [100, 15_000], ids=["a-flushed", "a-holds-unflushed-work"])
def test_two_instances_share_the_partitions_without_losing_windows(
    kafka_bootstrap, topics, bundle_dir, make_stream, a_wait_ms, backend, cpu_hog
):
    """B joins while A works; with a long max wait, A still holds unpublished windows when
    its partitions are revoked: they must go to the new owner, not be lost or doubled. A busy
    process on every core makes commits and joins slow (a stalled member fails the read)."""
    s = settings_for(kafka_bootstrap, topics, backend)
    s_a = settings_for(kafka_bootstrap, topics, backend, batch={"max_wait_ms": a_wait_ms})
    frame = make_stream(hours=4, anomalies=0, seed=27, entities=6).frame
    msgs = list(to_messages(frame))
    half = len(msgs) // 2
    with DaemonThread(s_a, bundle_dir) as a:
        publish(s.kafka, msgs[:half])
        wait_until(lambda: a.daemon.stats.readings > 0)
        if a_wait_ms < 1000:
            read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame.iloc[:half]) // 2)
        with DaemonThread(s, bundle_dir) as b:
            # a real split: a member that missed the join under load holds nothing for a while
            wait_until(lambda: split(a.assigned(), b.assigned()))
            publish(s.kafka, msgs[half:])
            scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame), stall_s=90)
    assert b.daemon.stats.windows > 0 and a.daemon.stats.windows > 0
    assert_same_scores(scores, offline_scores(bundle_dir, frame))


def test_serve_drains_commits_and_exits_zero_on_sigterm(
    kafka_bootstrap, topics, bundle_dir, make_stream, tmp_path, backend
):
    import re
    import urllib.request

    s = settings_for(kafka_bootstrap, topics)
    frame = make_stream(hours=3, anomalies=0, seed=28).frame
    publish(s.kafka, to_messages(frame))
    metrics_port = free_port()
    served = Served(
        kafka_bootstrap,
        topics,
        bundle_dir,
        tmp_path,
        "--create-topics",
        backend=backend,
        STREAMAE_METRICS_PORT=str(metrics_port),
    )

    def windows_scored() -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            found = re.search(r"^streamae_windows_scored_total (\S+)$", r.read().decode(), re.M)
        return float(found.group(1)) if found else None

    with served:
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame), stall_s=90)
        # scores leave as they are scored; the metric counts them once acknowledged (the commit)
        wait_until(lambda: windows_scored() == expected_windows(frame), stall_s=30)
        code = served.stop()
    out = serve_logs(tmp_path)
    assert code == 0, out
    assert "signal SIGTERM: draining" in out
    assert "using CPU" not in out  # providers came from the environment, not the default
    assert len(scores) == expected_windows(frame)
    marks = [c for c in committed(s.kafka, s.kafka.input_topic).values() if c and c.offset]
    assert marks and all("scored_through" in c.metadata for c in marks)
