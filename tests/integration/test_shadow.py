"""Shadow scoring on the real broker: a candidate bundle scores every window beside the current
one, to the shadow topic only, and the agreement metrics count what a promotion would change."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    DaemonThread,
    assert_same_scores,
    expected_windows,
    offline_scores,
    read_to_end,
    settings_for,
    wait_published_and_committed,
    wait_until,
)
from prometheus_client import REGISTRY

from streamae.core.bundle import load_bundle, write_bundle
from streamae.demo.simulate import to_messages
from streamae.serving.clients.admin import publish

pytestmark = pytest.mark.kafka


def _windows(current: str, shadow: str) -> float:
    labels = {"current": current, "shadow": shadow}
    return REGISTRY.get_sample_value("streamae_shadow_windows_total", labels) or 0.0


def test_the_shadow_scores_every_window_to_its_topic_and_never_alerts(
    kafka_bootstrap, topics, bundle_dir, make_stream, tmp_path
):
    b = load_bundle(bundle_dir)
    fields = b.manifest.model_dump(exclude={"checksum", "extras", "created_at"}) | {
        "model_version": "candidate"
    }
    write_bundle(tmp_path / "candidate", b.model_bytes, fields)  # same weights: the two must agree
    topics = topics | {"shadow_topic": topics["scores_topic"] + ".shadow"}
    s = settings_for(kafka_bootstrap, topics, model={"shadow_bundle": tmp_path / "candidate"})
    frame = make_stream(hours=8, anomalies=2, seed=41).frame
    before = {(c, h): _windows(c, h) for c in ("true", "false") for h in ("true", "false")}
    with DaemonThread(s, bundle_dir):
        publish(s.kafka, to_messages(frame))
        wait_until(lambda: len(read_to_end(s.kafka, s.kafka.scores_topic)) >= expected_windows(frame))
        wait_published_and_committed(s.kafka)
    scores = read_to_end(s.kafka, s.kafka.scores_topic)
    shadow = read_to_end(s.kafka, s.kafka.shadow_topic)
    offline = offline_scores(bundle_dir, frame)
    assert_same_scores(scores, offline)  # the current model's outputs are untouched
    assert_same_scores(shadow, offline)  # the candidate scored each window once
    assert {m["model_version"] for m in shadow} == {"candidate"}
    alerts = read_to_end(s.kafka, s.kafka.alerts_topic)
    assert alerts and {a["model_version"] for a in alerts} == {b.manifest.model_version}
    counted = {k: _windows(*k) - v for k, v in before.items()}
    # counted as scored: windows rescored after the start-up rebalance count again
    assert sum(counted.values()) >= len(shadow)
    assert counted[("true", "false")] == counted[("false", "true")] == 0  # identical models agree
    assert counted[("true", "true")] >= sum(m["is_anomaly"] for m in shadow) > 0
    assert REGISTRY.get_sample_value("streamae_shadow_score_correlation") == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite([m["score"] for m in shadow]).all()


def test_a_shadow_that_cannot_score_the_current_windows_is_a_config_error(
    kafka_bootstrap, topics, bundle_dir, variant_bundles, tmp_path
):
    other = variant_bundles["dense"].bundle.path  # window 10; the current one cuts 20
    env = {
        "STREAMAE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAMAE_MODEL__SHADOW_BUNDLE": str(other),
        "STREAMAE_MODEL__PROVIDERS": '["CPUExecutionProvider"]',
        "PATH": "/usr/bin:/bin",
    }
    cmd = [sys.executable, "-m", "streamae", "serve", "--bundle", str(bundle_dir)]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "STREAMAE_MODEL__SHADOW_BUNDLE" in done.stderr and "window 10 differ" in done.stderr
