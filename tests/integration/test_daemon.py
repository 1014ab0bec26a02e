"""The daemon against the real local broker (deploy/kafka.sh): it scores like offline."""

from __future__ import annotations

import pytest
from helpers import (
    DaemonThread,
    assert_same_scores,
    expected_windows,
    offline_scores,
    read_to_end,
    read_topic,
    settings_for,
    wait_published_and_committed,
)

from streamae.core.config import VARIANTS, ConfigError, TrainSettings
from streamae.core.messages import ScoreMessage
from streamae.demo.simulate import to_messages
from streamae.demo.transactions import simulate_transactions
from streamae.serving.clients.admin import daemon_topics, ensure_topics, publish
from streamae.serving.commit import state_store
from streamae.training.fit import fit

pytestmark = pytest.mark.kafka


def test_normal_stream_scores_every_window_like_offline_and_raises_no_alert(
    kafka_bootstrap, topics, bundle_dir, make_stream, backend
):
    s = settings_for(kafka_bootstrap, topics, backend)
    frame = make_stream(hours=6, anomalies=0, seed=21).frame
    n = expected_windows(frame)
    with DaemonThread(s, bundle_dir) as d:
        publish(s.kafka, to_messages(frame))
        scores = read_topic(s.kafka, s.kafka.scores_topic, n)
        # every output of every record is acknowledged before this holds: alerts included
        wait_published_and_committed(s.kafka)
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


def test_transactions_with_categories_and_key_context_score_across_a_restart_like_offline(
    kafka_bootstrap, topics, tmp_path
):
    """Card transactions (text fields, per-key context features): the daemon, stopped halfway
    and started again, scores every window exactly as ``streamae score`` does on the file,
    and names input fields (never one-hot columns) in its top features."""
    history = simulate_transactions(accounts=12, days=12, frauds_per_account=0, seed=5).frame
    bundle = tmp_path / "cards"
    cfg = TrainSettings(window=6, epochs=5)
    fit(history.drop(columns=["label", "anomaly_type"]), bundle, cfg, "cards", progress=False)
    s = settings_for(kafka_bootstrap, topics)
    frame = simulate_transactions(accounts=12, days=6, frauds_per_account=1, seed=6).frame
    msgs = list(to_messages(frame))
    cut = len(msgs) // 2
    with DaemonThread(s, bundle):
        publish(s.kafka, msgs[:cut])
        read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame.iloc[:cut], window=6))
    with DaemonThread(s, bundle):
        publish(s.kafka, msgs[cut:])
        scores = read_topic(s.kafka, s.kafka.scores_topic, expected_windows(frame, window=6))
    assert_same_scores(scores, offline_scores(bundle, frame))
    named = {f["feature"] for doc in scores for f in doc["top_features"]}
    assert named <= {"amount", "merchant_category", "country", "channel", "timing"} and "country" in named
