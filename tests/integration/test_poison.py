"""Poison records and outputs too large for a topic, against the real broker on each client
library: every input ends up scored or dead-lettered, every output is bounded, and the
daemon never stops for it."""

from __future__ import annotations

import orjson
import pytest
from helpers import (
    DaemonThread,
    assert_same_scores,
    committed,
    expected_windows,
    offline_scores,
    read_records,
    read_topic,
    settings_for,
    wait_published_and_committed,
)
from kafka.admin import KafkaAdminClient, NewTopic

from streamae.core.messages import DeadLetter, ScoreBatchMessage
from streamae.demo.simulate import to_messages
from streamae.serving.clients.admin import publish
from streamae.serving.clients.kafka_python import client_configs

pytestmark = pytest.mark.kafka

FEATURES = ["temperature", "pressure", "vibration", "flow", "power"]
LIMIT = 900 * 1024  # STREAMAE_OUTPUT__MAX_MESSAGE_BYTES's default


def weight(r) -> int:
    return len(r.key or b"") + len(r.value or b"") + sum(len(n) + len(v) for n, v in r.headers)


def test_malformed_and_huge_records_become_bounded_dead_letters_and_the_stream_goes_on(
    kafka_bootstrap, topics, bundle_dir, make_stream, backend
):
    s = settings_for(kafka_bootstrap, topics, backend)
    frame = make_stream(hours=2, anomalies=0, seed=24).frame
    msgs = list(to_messages(frame))
    full = dict.fromkeys(FEATURES, 1.0)
    bad = {
        "invalid_json": (b"machine-01", b"{oops"),
        "missing_field": (b"machine-01", orjson.dumps({"key": "machine-01", "ts": 1, "values": {"flow": 1}})),
        "invalid_timestamp": (
            b"machine-02",
            orjson.dumps([{"key": "machine-02", "ts": "soon", "values": full}]),
        ),
        "invalid_key": (None, orjson.dumps({"ts": 1, "values": full})),
        # not UTF-8 and close to the broker's message limit: 3x larger once decoded
        "invalid_json/ff": (b"machine-02", b"\xff" * 900_000),
        # the reproduction: a 700,000-byte key, 340,000 bytes that escape six-fold
        "invalid_json/x01": (b"k" * 700_000, b"\x01" * 340_000),
        # valid readings whose key alone would make every score message 1.2 MB
        "key_too_long": (b"m", orjson.dumps({"key": "m" * 600_000, "ts": 1767225600, "values": full})),
    }
    half = len(msgs) // 2
    with DaemonThread(s, bundle_dir) as d:
        publish(s.kafka, msgs[:half] + list(bad.values()) + msgs[half:])
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame))
        records = read_records(s.kafka, s.kafka.dlq_topic, len(bad))
        wait_published_and_committed(s.kafka)
        assert d.thread.is_alive()
    assert_same_scores(scores, offline_scores(bundle_dir, frame))
    assert len(records) == len(bad)
    dead = [orjson.loads(r.value) for r in records]
    for r, doc in zip(records, dead):
        DeadLetter.model_validate(doc)
        assert weight(r) <= LIMIT and len(r.key or b"") <= 1024
        assert dict(r.headers)["streamae.reason_code"] == doc["reason_code"].encode()
        assert doc["topic"] == s.kafka.input_topic and doc["offset"] >= 0
    assert sorted(d["reason_code"] for d in dead) == sorted(code.split("/")[0] for code in bad)
    assert {d["value"] for d in dead} >= {"{oops"}
    ff = next(d for d in dead if d["value_bytes"] == 900_000)
    assert 0 < len(ff["value"]) <= 64 * 1024 and ff["truncated"]
    x01 = next(d for d in dead if d["value_bytes"] == 340_000)
    assert x01["truncated"] and x01["value"] and set(x01["value"]) == {"\x01"}
    assert len(x01["key"]) == 1000


def test_outputs_a_topic_refuses_as_too_large_are_dead_lettered_and_committed(
    kafka_bootstrap, topics, bundle_dir, make_stream, backend
):
    """The scores topic takes 64 bytes at most (a lower max.message.bytes than ours): each
    score is refused; it goes to the dead-letter topic with output_too_large, the offsets
    are committed, and the daemon stays up (before: exit 1 on every start)."""
    s = settings_for(kafka_bootstrap, topics, backend)
    k = s.kafka
    admin = KafkaAdminClient(**client_configs(k))
    admin.create_topics([NewTopic(k.scores_topic, 3, 1, topic_configs={"max.message.bytes": "64"})])
    admin.close()
    frame = make_stream(hours=1, anomalies=0, seed=25).frame
    n = expected_windows(frame)
    with DaemonThread(s, bundle_dir) as d:
        publish(k, to_messages(frame))
        dead = read_topic(k, k.dlq_topic, n, stall_s=90)
        wait_published_and_committed(k)
        assert d.thread.is_alive()
    assert len(dead) == n and {x["reason_code"] for x in dead} == {"output_too_large"}
    assert all(k.scores_topic in x["reason"] and orjson.loads(x["value"])["key"] == x["key"] for x in dead)
    # the broker's cause, not a symptom of it (before: "UnknownError('Future not done')")
    assert all("MessageSizeTooLarge" in x["reason"] or "MSG_SIZE_TOO_LARGE" in x["reason"] for x in dead)
    ends = sorted((x["partition"], x["offset"]) for x in dead)
    assert len(set(ends)) == n  # one per window: the offset of its last reading
    assert d.daemon.stats.dead_letters == n and d.daemon.stats.windows == 0
    marks = [c for c in committed(k, k.input_topic).values() if c is not None]
    assert marks and all("scored_through" in c.metadata for c in marks)


@pytest.mark.parametrize("form", ["batch", "above"])
def test_thinner_score_forms_carry_the_same_scores(kafka_bootstrap, topics, bundle_dir, make_stream, form):
    s = settings_for(kafka_bootstrap, topics, output={"scores": form, "above_fraction": 0.2})
    sim = make_stream(hours=4, anomalies=1, seed=29)
    offline = offline_scores(bundle_dir, sim.frame)
    with DaemonThread(s, bundle_dir) as d:
        publish(s.kafka, to_messages(sim.frame))
        wait_published_and_committed(s.kafka)
        docs = read_topic(s.kafka, s.kafka.scores_topic, lambda _: True, stall_s=10)
    if form == "batch":
        for doc in docs:
            ScoreBatchMessage.model_validate(doc)
        scores = [
            {"key": b["key"], "window_end": e, "score": x, "is_anomaly": a}
            for b in docs
            for e, x, a in zip(b["window_end"], b["score"], b["is_anomaly"])
        ]
        assert len(docs) < len(scores) // 10
    else:
        scores = docs
        offline = offline[offline["score"] >= 0.2 * offline["threshold"]]
        assert 0 < len(offline) < d.daemon.stats.readings
    assert_same_scores(scores, offline)
