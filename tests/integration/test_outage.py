"""A broker stopped for a minute under load, then started again (same port, same data):
the daemon waits it out, paused and not ready, resumes by itself, and loses no window; in
exactly-once mode a read_committed reader sees none twice either."""

from __future__ import annotations

import collections
import threading
import time

import pytest
from helpers import (
    DaemonThread,
    read_to_end,
    settings_for,
    wait_published_and_committed,
    wait_until,
    window_ends_expected,
)

from streamae.core.config import KafkaSettings
from streamae.demo.simulate import to_messages
from streamae.serving.clients.admin import publish

pytestmark = pytest.mark.kafka

OUTAGE_S = 60


def window_counts(docs: list[dict]) -> collections.Counter:
    """How often each window was published, by the input offset of its last reading."""
    return collections.Counter((d["source"]["partition"], d["source"]["offset_end"]) for d in docs)


def recovery_s(k: KafkaSettings) -> float:
    """The longest the daemon may take, once the broker is back, to commit again: the clients
    try the broker within reconnect_backoff_max_ms (kafka-python's own 30 s made at-least-once
    wait 36-44 s), the daemon within retry_backoff_max_ms, then a commit: one request. A
    transaction may also have been left blocked by the outage: the commit gives up on it after
    two request timeouts (plus 5 s), and the new producer that fences it needs one more."""
    s = k.reconnect_backoff_max_ms + k.retry_backoff_max_ms + k.request_timeout_ms
    if k.delivery == "exactly_once":
        s += 3 * k.request_timeout_ms + 5000
    return s / 1000


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "backend,delivery",
    [
        ("kafka-python", "at_least_once"),
        ("kafka-python", "exactly_once"),
        ("confluent-kafka", "exactly_once"),
    ],
)
def test_a_broker_stopped_for_a_minute_under_load_is_waited_out(
    own_broker, topics, bundle_dir, make_stream, backend, delivery, record_property
):
    kafka = {
        "delivery": delivery,
        "request_timeout_ms": 10_000,
        "retry_backoff_max_ms": 5_000,
        "commit_interval_ms": 3_000,  # so that outputs wait for their commit when the broker goes
    }
    s = settings_for(own_broker.bootstrap, topics, backend, kafka=kafka)
    k = s.kafka
    frame = make_stream(hours=12, anomalies=0, seed=31, entities=4).frame
    msgs = list(to_messages(frame))
    chunks = [msgs[i : i + 60] for i in range(0, len(msgs), 60)]
    health = []
    with DaemonThread(s, bundle_dir) as d:

        def feed() -> None:  # the load: a chunk every 0.5 s, and through the outage
            for chunk in chunks:
                while True:
                    try:
                        publish(k, chunk)
                        break
                    except Exception:  # the broker is away: this producer gives up, try again
                        time.sleep(1)
                time.sleep(0.5)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: d.daemon.stats.commits >= 2, stall_s=60)
        # outputs not acknowledged yet (exactly-once: held for the transaction; at-least-once:
        # sent, their acknowledgements waiting for the next commit)
        wait_until(lambda: d.daemon.health().held_outputs > 100)
        own_broker.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < OUTAGE_S:
            health.append(d.daemon.health())
            assert d.thread.is_alive(), d.error
            time.sleep(1)
        own_broker.start()
        back, commits = time.monotonic(), d.daemon.stats.commits
        wait_until(lambda: d.daemon.stats.commits > commits, stall_s=recovery_s(k) + 10)
        recovered_s = time.monotonic() - back
        feeder.join(300)
        assert not feeder.is_alive()
        wait_published_and_committed(k)
        assert d.thread.is_alive() and d.daemon.health().ready
        stats = d.daemon.stats
    isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
    counts = window_counts(read_to_end(k, k.scores_topic, isolation_level=isolation))
    expected = window_ends_expected(k)  # the producer may have sent a chunk twice
    lost, extra = len(expected - counts.keys()), len(counts.keys() - expected)
    duplicated = sum(c - 1 for c in counts.values())
    record_property(
        "outage",
        {"windows": len(expected), "lost": lost, "duplicated": duplicated, "recovered_s": recovered_s},
    )
    print(
        f"outage {backend} {delivery}: {stats.readings} readings read, {len(expected)} windows, "
        f"{lost} lost, {duplicated} twice, {extra} unexpected; first commit {recovered_s:.1f} s after the "
        "broker was back"
    )
    assert extra == 0
    assert lost == 0
    if delivery == "exactly_once":
        assert duplicated == 0
    # it noticed, and said so: backing off, or left without partitions by the group
    assert any(not h.ready and (h.in_backoff or not h.assigned) for h in health)
    assert stats.readings >= len(msgs)
