"""The daemon against the real local broker (deploy/kafka.sh)."""

from __future__ import annotations

import socket

import numpy as np
import orjson
import pandas as pd
import pytest
from helpers import (
    DaemonThread,
    all_published_and_committed,
    committed,
    read_to_end,
    read_topic,
    settings_for,
    wait_until,
)
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import MessageSizeTooLargeError

from streamae.core.bundle import load_bundle
from streamae.core.config import VARIANTS, ConfigError, TrainSettings
from streamae.core.messages import DeadLetter, ScoreMessage
from streamae.core.offline import score_frame
from streamae.core.scoring import Scorer
from streamae.demo.simulate import to_messages
from streamae.serving import state_store
from streamae.serving.errors import DeliveryError
from streamae.serving.kafka_admin import daemon_topics, ensure_topics, publish
from streamae.serving.kafka_python import client_configs
from streamae.training.fit import fit

pytestmark = pytest.mark.kafka


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_windows(frame: pd.DataFrame, window: int = 20) -> int:
    return int(sum(max(0, n - window + 1) for n in frame.groupby("key").size()))


def offline_scores(bundle_dir, frame) -> pd.DataFrame:
    scorer = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"])
    return score_frame(frame, scorer, "file")


def assert_same_scores(daemon_scores: list[dict], offline: pd.DataFrame) -> None:
    got = pd.DataFrame(daemon_scores)[["key", "window_end", "score", "is_anomaly"]]
    assert not got.duplicated(["key", "window_end"]).any(), "a window was published twice"
    merged = offline.merge(
        got, on=["key", "window_end"], how="outer", indicator=True, suffixes=("_offline", "_daemon")
    )
    assert (merged["_merge"] == "both").all(), merged["_merge"].value_counts()
    np.testing.assert_allclose(merged["score_daemon"], merged["score_offline"], rtol=1e-5)
    assert (merged["is_anomaly_daemon"] == merged["is_anomaly_offline"]).all()


def test_normal_stream_scores_every_window_like_offline_and_raises_no_alert(
    kafka_bootstrap, topics, bundle_dir, make_stream
):
    s = settings_for(kafka_bootstrap, topics)
    frame = make_stream(hours=6, anomalies=0, seed=21).frame
    n = expected_windows(frame)
    with DaemonThread(s, bundle_dir) as d:
        publish(s.kafka, to_messages(frame))
        scores = read_topic(s.kafka, s.kafka.scores_topic, n)
        # every output of every record is acknowledged before this holds: alerts included
        wait_until(lambda: all_published_and_committed(s.kafka))
        alerts = read_to_end(s.kafka, s.kafka.alerts_topic)
    assert len(scores) == n
    for msg in scores[:50]:
        ScoreMessage.model_validate(msg)
    assert_same_scores(scores, offline_scores(bundle_dir, frame))
    assert alerts == []
    assert d.daemon.stats.dead_letters == 0 and d.daemon.stats.readings == len(frame)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_scores_through_the_daemon_like_offline(
    kafka_bootstrap, topics, variant_bundles, make_stream, variant
):
    s = settings_for(kafka_bootstrap, topics)
    bundle = variant_bundles[variant].bundle.path
    frame = make_stream(hours=2, anomalies=0, seed=27).frame
    with DaemonThread(s, bundle):
        publish(s.kafka, to_messages(frame))
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame, window=10))
    assert {m["model_version"].split("-")[0] for m in scores} == {variant}
    assert_same_scores(scores, offline_scores(bundle, frame))


def test_smoothed_scores_continue_across_a_restart(kafka_bootstrap, topics, history, make_stream, tmp_path):
    """EWMA state is saved with the alert state: after a restart every key's smoothing goes
    on from where the last commit left it, exactly as one offline pass over the file."""
    bundle = tmp_path / "ewma"
    fit(history, bundle, TrainSettings(window=10, epochs=2, ewma_alpha=0.2), progress=False)
    s = settings_for(kafka_bootstrap, topics)
    frame = make_stream(hours=6, anomalies=1, seed=28).frame
    msgs = list(to_messages(frame))
    cut = len(msgs) // 2
    first_half = frame.iloc[:cut]
    with DaemonThread(s, bundle):
        publish(s.kafka, msgs[:cut])
        read_topic(s.kafka, s.kafka.scores_topic, expected_windows(first_half, window=10))
    with DaemonThread(s, bundle):
        publish(s.kafka, msgs[cut:])
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame, window=10))
    offline = offline_scores(bundle, frame)
    assert (offline["score"] != offline["raw_score"]).mean() > 0.9  # smoothing is on
    assert_same_scores(scores, offline)


def test_list_messages_are_scored_like_single_readings(kafka_bootstrap, topics, bundle_dir, make_stream):
    s = settings_for(kafka_bootstrap, topics)
    frame = make_stream(hours=2, anomalies=0, seed=22).frame
    n = expected_windows(frame)
    with DaemonThread(s, bundle_dir):
        publish(s.kafka, to_messages(frame, batch=7))
        scores = read_topic(s.kafka, s.kafka.scores_topic, n)
    assert_same_scores(scores, offline_scores(bundle_dir, frame))


def test_injected_anomaly_opens_and_closes_an_alert(kafka_bootstrap, topics, bundle_dir, make_stream):
    s = settings_for(kafka_bootstrap, topics, alerts={"k": 3, "n": 5, "quiet_windows": 5})
    sim = make_stream(hours=10, anomalies=1, seed=23)
    n = expected_windows(sim.frame)
    with DaemonThread(s, bundle_dir):
        publish(s.kafka, to_messages(sim.frame))
        read_topic(s.kafka, s.kafka.scores_topic, n)
        alerts = read_topic(
            s.kafka, s.kafka.alerts_topic, lambda docs: sum(a["event"] == "close" for a in docs) >= 2
        )
    for a in sim.anomalies:
        mine = [
            e
            for e in alerts
            if e["key"] == a.key and e["start"] <= a.end + 20 * 60 and (e["end"] or e["start"]) >= a.start
        ]
        kinds = [e["event"] for e in mine]
        assert "open" in kinds and "close" in kinds, (a, alerts)
        opened = next(e for e in mine if e["event"] == "open")
        closed = next(e for e in mine if e["event"] == "close")
        assert opened["alert_id"] == closed["alert_id"] and closed["end"] >= closed["start"]
        assert closed["peak_score"] > closed["threshold"]
        if a.kind == "level_shift":
            assert closed["top_features"][0]["feature"] == a.sensor


def test_malformed_records_go_to_the_dead_letter_topic_and_the_stream_goes_on(
    kafka_bootstrap, topics, bundle_dir, make_stream
):
    s = settings_for(kafka_bootstrap, topics)
    frame = make_stream(hours=2, anomalies=0, seed=24).frame
    msgs = list(to_messages(frame))
    full = dict.fromkeys(["temperature", "pressure", "vibration", "flow", "power"], 1.0)
    bad = [
        (b"machine-01", b"{oops"),
        (b"machine-01", orjson.dumps({"key": "machine-01", "ts": 1, "values": {"flow": 1}})),
        (b"machine-02", orjson.dumps([{"key": "machine-02", "ts": "soon", "values": full}])),
        (None, orjson.dumps({"ts": 1, "values": full})),
        # not UTF-8 and close to the broker's message limit: 3x larger once decoded
        (b"machine-02", b"\xff" * 900_000),
    ]
    half = len(msgs) // 2
    with DaemonThread(s, bundle_dir):
        publish(s.kafka, msgs[:half] + bad + msgs[half:])
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame))
        dead = read_topic(s.kafka, s.kafka.dlq_topic, len(bad))
    assert len(scores) == expected_windows(frame)
    assert len(dead) == len(bad)
    for d in dead:
        DeadLetter.model_validate(d)
        assert d["topic"] == s.kafka.input_topic and d["offset"] >= 0
    reasons = " | ".join(sorted(d["reason"] for d in dead))
    for fragment in ("invalid JSON", "missing field 'temperature'", "isoformat", "no 'key'"):
        assert fragment in reasons
    assert {d["value"] for d in dead} >= {"{oops"}
    huge = next(d for d in dead if d["value_bytes"] == 900_000)
    assert 0 < len(huge["value"]) <= 64 * 1024


def test_offsets_are_not_committed_when_outputs_are_not_acknowledged(
    kafka_bootstrap, topics, bundle_dir, make_stream
):
    """The broker rejects every score (topic limit 64 bytes): nothing may be committed; a
    fixed daemon in the same group then scores every window from the start."""
    s = settings_for(kafka_bootstrap, topics)
    k = s.kafka
    admin = KafkaAdminClient(**client_configs(k))
    admin.create_topics([NewTopic(k.scores_topic, 3, 1, topic_configs={"max.message.bytes": "64"})])
    admin.close()
    frame = make_stream(hours=2, anomalies=0, seed=25).frame
    publish(k, to_messages(frame))
    d = DaemonThread(s, bundle_dir)
    d.thread.join(60)
    assert isinstance(d.error, DeliveryError), d.error
    # it names the broker's refusal, not a symptom of it (a timeout, 'Future not done')
    assert isinstance(d.error.__cause__, MessageSizeTooLargeError), repr(d.error.__cause__)
    assert k.scores_topic in str(d.error)
    assert all(c is None or c.offset is None for c in committed(k, k.input_topic).values())

    fixed = settings_for(kafka_bootstrap, {**topics, "scores_topic": topics["scores_topic"] + "2"})
    with DaemonThread(fixed, bundle_dir):
        scores = read_topic(fixed.kafka, fixed.kafka.scores_topic, expected_windows(frame))
    assert_same_scores(scores, offline_scores(bundle_dir, frame))
    # committed offsets now sit at the oldest reading each key still needs, with metadata
    marks = [c for c in committed(fixed.kafka, k.input_topic).values() if c and c.offset is not None]
    assert marks
    for c in marks:
        scored_through = orjson.loads(c.metadata)["scored_through"]
        assert 0 < c.offset <= scored_through  # replay starts before what was published


def test_a_missing_state_topic_stops_the_daemon_naming_the_setting(
    kafka_bootstrap, topics, bundle_dir, monkeypatch
):
    monkeypatch.setattr(state_store, "TOPIC_SETTLE_S", 1.0)
    s = settings_for(kafka_bootstrap, topics)
    ensure_topics(s.kafka, daemon_topics(s.kafka))  # everything but the state topic
    d = DaemonThread(s, bundle_dir, create_topics=False)
    d.thread.join(60)
    assert isinstance(d.error, ConfigError)
    assert "STREAMAE_KAFKA__STATE_TOPIC" in str(d.error) and "0 partitions for the 3" in str(d.error)


def test_restart_loses_no_window_and_publishes_none_twice(kafka_bootstrap, topics, bundle_dir, make_stream):
    s = settings_for(kafka_bootstrap, topics)
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


@pytest.mark.parametrize("a_wait_ms", [100, 15_000], ids=["a-flushed", "a-holds-unflushed-work"])
def test_two_instances_share_the_partitions_without_losing_windows(
    kafka_bootstrap, topics, bundle_dir, make_stream, a_wait_ms
):
    """B joins while A works; with a long max wait, A still holds unpublished windows when
    its partitions are revoked: they must go to the new owner, not be lost or doubled."""
    s = settings_for(kafka_bootstrap, topics)
    s_a = settings_for(kafka_bootstrap, topics, batch={"max_wait_ms": a_wait_ms})
    frame = make_stream(hours=4, anomalies=0, seed=27, entities=6).frame
    msgs = list(to_messages(frame))
    half = len(msgs) // 2
    with DaemonThread(s_a, bundle_dir) as a:
        publish(s.kafka, msgs[:half])
        wait_until(lambda: a.daemon.stats.readings > 0)
        if a_wait_ms < 1000:
            read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame.iloc[:half]) // 2)
        with DaemonThread(s, bundle_dir) as b:
            wait_until(lambda: b.assigned() and len(a.assigned()) < 3)
            publish(s.kafka, msgs[half:])
            scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame), timeout_s=90)
    assert b.daemon.stats.windows > 0 and a.daemon.stats.windows > 0
    assert_same_scores(scores, offline_scores(bundle_dir, frame))


def test_serve_drains_commits_and_exits_zero_on_sigterm(
    kafka_bootstrap, topics, bundle_dir, make_stream, tmp_path
):
    import os
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    s = settings_for(kafka_bootstrap, topics)
    frame = make_stream(hours=3, anomalies=0, seed=28).frame
    publish(s.kafka, to_messages(frame))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
    env.update({f"STREAMAE_KAFKA__{k.upper()}": v for k, v in topics.items()})
    metrics_port = _free_tcp_port()
    env.update(
        STREAMAE_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
        STREAMAE_MODEL__PROVIDERS='["CPUExecutionProvider"]',
        STREAMAE_METRICS_PORT=str(metrics_port),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamae", "serve", "--bundle", str(bundle_dir), "--create-topics"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame), timeout_s=90)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            exposed = r.read().decode()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "signal SIGTERM: draining" in out
    assert "using CPU" not in out  # providers came from the environment, not the default
    windows_metric = re.search(r"^streamae_windows_scored_total (\S+)$", exposed, re.M)
    assert windows_metric and float(windows_metric.group(1)) == expected_windows(frame)
    assert len(scores) == expected_windows(frame)
    marks = [c for c in committed(s.kafka, s.kafka.input_topic).values() if c and c.offset]
    assert marks and all("scored_through" in c.metadata for c in marks)
