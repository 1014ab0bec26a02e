"""The retraining job on the real broker, as an operator runs it: v1 trained from the topic,
the normal shifts, ``streamae retrain`` promotes v2 and the daemon's false alarms fall; a bad
version forced past the gate is rolled back in one command; no window is lost throughout."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import Served, read_to_end, serve_logs, settings_for, wait_until

from streamae.core.registry import Registry
from streamae.demo.simulate import DAY_S, simulate, to_messages
from streamae.serving.clients.admin import ensure_daemon_topics, publish

pytestmark = pytest.mark.kafka

T0 = 1_767_225_600.0
PINNED = ["--variant", "dense", "--window", "20", "--epochs", "6", "-q"]


def regime(days: float, start: float, seed: int, shifted: bool) -> pd.DataFrame:
    frame = simulate(2, days * DAY_S, anomalies_per_entity=0, start=start, seed=seed).frame
    frame = frame.drop(columns=["label", "anomaly_type"])
    if shifted:  # the new normal: hotter, drawing more power
        frame = frame.assign(temperature=frame["temperature"] + 12.0, power=frame["power"] * 1.5)
    return frame


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "streamae", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_retrain_promotes_the_new_normal_and_a_forced_bad_version_rolls_back(
    kafka_bootstrap, topics, tmp_path
):
    s = settings_for(kafka_bootstrap, topics)
    ensure_daemon_topics(s.kafka)
    reg = tmp_path / "registry"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
    env |= {f"STREAMAE_KAFKA__{k.upper()}": v for k, v in topics.items()}
    env |= {
        "STREAMAE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAMAE_MODEL__PROVIDERS": '["CPUExecutionProvider"]',
        "STREAMAE_REGISTRY": str(reg),
    }
    parts = [
        regime(1.0, T0, 1, shifted=False),
        regime(0.5, T0 + 1.0 * DAY_S, 2, shifted=True),
        regime(0.5, T0 + 1.5 * DAY_S, 3, shifted=True),
        regime(0.25, T0 + 2.0 * DAY_S, 4, shifted=True),
    ]
    publish(s.kafka, to_messages(parts[0]))
    first = cli(env, tmp_path, "retrain", "--days", "1", *PINNED)
    assert first.returncode == 0 and "gate: passed: first version" in first.stdout, (
        first.stdout + first.stderr
    )
    r = Registry(reg)
    v1 = r.record("v0001").model_version
    published = len(parts[0])

    def scores() -> list[dict]:
        return read_to_end(s.kafka, s.kafka.scores_topic)

    def all_scored() -> bool:
        return len(scores()) >= published - 2 * 19  # two machines, windows of 20, stride 1

    with Served(
        kafka_bootstrap, topics, reg / "current", tmp_path, STREAMAE_MODEL__RELOAD_INTERVAL_S="0.5"
    ) as served:
        shift_at = time.time()
        publish(s.kafka, to_messages(parts[1]))
        published += len(parts[1])
        wait_until(all_scored, stall_s=120)
        # the old model alerts on the new normal; those are the readings to learn from now
        second = cli(env, tmp_path, "retrain", "--since", f"{shift_at:.3f}", "--keep-alerted", *PINNED)
        assert second.returncode == 0 and "current: v0002" in second.stdout, second.stdout + second.stderr
        v2 = r.record("v0002").model_version
        wait_until(lambda: f"model reload: serving {v2}" in serve_logs(tmp_path))
        publish(s.kafka, to_messages(parts[2]))
        published += len(parts[2])
        wait_until(all_scored, stall_s=120)
        # a version trained on the stale regime: the gate refuses it, --force promotes it anyway
        stale = tmp_path / "stale.csv"
        pd.concat([parts[0], parts[2].tail(400)]).to_csv(stale, index=False)
        bad = cli(env, tmp_path, "retrain", "--history", str(stale), "--force", *PINNED)
        assert bad.returncode == 0 and "gate: refused" in bad.stdout, bad.stdout + bad.stderr
        v3 = r.record("v0003").model_version
        wait_until(lambda: f"model reload: serving {v3}" in serve_logs(tmp_path))
        back = cli(env, tmp_path, "models", "rollback", "--reason", "v0003 alarms on the new normal")
        assert back.returncode == 0 and "current: v0002 (rolled back from v0003)" in back.stdout, back.stderr
        wait_until(lambda: serve_logs(tmp_path).count(f"model reload: serving {v2}") == 2)
        publish(s.kafka, to_messages(parts[3]))
        published += len(parts[3])
        wait_until(all_scored, stall_s=120)
        assert served.stop() == 0
    got = scores()
    ends = collections.Counter((m["source"]["partition"], m["source"]["offset_end"]) for m in got)
    assert len(got) == published - 2 * 19 and max(ends.values()) == 1  # no window lost, none twice
    t1, t2, t3 = (float(p["timestamp"].min()) for p in parts[1:])
    far = {
        name: pd.Series(
            [m["is_anomaly"] for m in got if lo + 20 * 60 <= m["window_end"] < hi and m["model_version"] == v]
        )
        for name, v, lo, hi in (("v1 on the new normal", v1, t1, t2), ("v2 on the new normal", v2, t2, t3))
    }
    print({name: (round(float(x.mean()), 4), len(x)) for name, x in far.items()})
    assert far["v1 on the new normal"].mean() > 0.5 and len(far["v2 on the new normal"]) > 300
    # trained on 0.4 day of the new normal, v2 still alarms on some windows, ten times fewer
    assert far["v2 on the new normal"].mean() < far["v1 on the new normal"].mean() / 5
    # alerts v1 opened on the new normal are closed after the swap, by v2, never left open
    events = read_to_end(s.kafka, s.kafka.alerts_topic)
    opened = {a["alert_id"] for a in events if a["event"] == "open" and a["model_version"] == v1}
    closed = collections.Counter(a["alert_id"] for a in events if a["event"] == "close")
    assert opened and all(closed[i] == 1 for i in opened), (opened, closed)
    assert [p.to for p in r.promotions()] == ["v0001", "v0002", "v0003", "v0002"]
    assert r.promotions()[2].why.startswith("forced: worse")
