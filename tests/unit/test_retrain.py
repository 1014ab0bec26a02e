"""``streamae retrain`` from files: the gate promotes a model of the new normal and refuses a
model trained on stale data (exit 3), and every version is in the registry with its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from streamae.cli import main
from streamae.core.registry import Registry
from streamae.demo.simulate import DAY_S, simulate

T0 = 1_767_225_600.0
PINNED = ["--variant", "dense", "--window", "20", "--epochs", "6", "-q"]


def regime(days: float, start: float, seed: int, shifted: bool) -> pd.DataFrame:
    """Two machines; ``shifted``: the new normal (hotter, drawing more power)."""
    frame = simulate(2, days * DAY_S, anomalies_per_entity=0, start=start, seed=seed).frame
    frame = frame.drop(columns=["label", "anomaly_type"])
    if shifted:
        frame = frame.assign(temperature=frame["temperature"] + 12.0, power=frame["power"] * 1.5)
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("regimes")
    old = regime(1.5, T0, 1, shifted=False)
    new = regime(1.5, T0 + 1.5 * DAY_S, 2, shifted=True)
    # stale: mostly the old regime, its recent fifth (what the gate judges on) the new one
    cut = T0 + 1.5 * DAY_S + 1.2 * DAY_S
    stale = pd.concat([old, new[new["timestamp"] > cut]], ignore_index=True)
    out = {"old": d / "old.csv", "new": d / "new.csv", "stale": d / "stale.csv"}
    for name, frame in (("old", old), ("new", new), ("stale", stale)):
        frame.to_csv(out[name], index=False)
    return out


def retrain(registry: Path, history: Path, *flags: str) -> int:
    return main(["retrain", "--history", str(history), "--registry", str(registry), *PINNED, *flags])


def test_the_gate_promotes_the_new_normal_and_refuses_a_stale_model(files, tmp_path, capsys, clean_env):
    reg = tmp_path / "registry"
    assert retrain(reg, files["old"]) == 0  # the first version is promoted
    assert "gate: passed: first version" in capsys.readouterr().out
    assert retrain(reg, files["new"]) == 0
    out = capsys.readouterr().out
    assert "gate: passed: not worse" in out and "current: v0002" in out
    r = Registry(reg)
    g2 = r.record("v0002").gate
    assert g2 is not None and g2["passed"]
    # on the new normal the old model alarms on most windows, the retrained one on few
    assert g2["old_false_alarm_rate"] > 0.5 and g2["new_false_alarm_rate"] < 0.05
    assert retrain(reg, files["stale"]) == 3  # trained on the old regime: worse on the recent data
    out = capsys.readouterr().out
    assert "gate: refused: worse than the current version" in out and "kept; v0003 not promoted" in out
    assert r.current() == "v0002" and [v.version for v in r.versions()] == ["v0001", "v0002", "v0003"]
    g3 = r.record("v0003").gate
    assert g3 is not None and not g3["passed"] and g3["new_false_alarm_rate"] > g3["old_false_alarm_rate"]
    promotions = [json.loads(line) for line in (reg / "promotions.jsonl").read_text().splitlines()]
    assert [p["to"] for p in promotions] == ["v0001", "v0002"]
    assert promotions[1]["gate"]["new_false_alarm_rate"] == g2["new_false_alarm_rate"]
    rec = r.record("v0002")
    assert rec.data_fingerprint and rec.data_fingerprint.startswith("sha256:")
    assert rec.data_range and rec.data_range[0] == pytest.approx(T0 + 1.5 * DAY_S)


def test_forced_promotion_is_recorded_and_too_little_history_is_an_error(files, tmp_path, capsys, clean_env):
    reg = tmp_path / "registry"
    assert retrain(reg, files["new"]) == 0
    assert retrain(reg, files["stale"], "--force") == 0
    out = capsys.readouterr().out
    assert "gate: refused" in out and "current: v0002" in out
    last = Registry(reg).promotions()[-1]
    assert last.to == "v0002" and last.why.startswith("forced: worse")
    tiny = tmp_path / "tiny.csv"
    pd.read_csv(files["new"]).head(30).to_csv(tiny, index=False)
    assert retrain(reg, tiny) == 1
    assert "streamae: error:" in capsys.readouterr().err


def test_readings_near_an_alert_are_labelled_and_malformed_messages_counted():
    from streamae.training.retrain import label_alerts, messages_frame

    msgs = [
        (b"m1", b'{"key": "m1", "ts": 100, "values": {"a": 1.0}}'),
        (b"m2", b'[{"ts": "1970-01-01T00:03:20Z", "values": {"a": 2.0}}, {"ts": 300, "values": 5}]'),
        (b"m1", b"{not json"),
        (None, b'{"ts": 400, "values": {"a": 3.0}}'),  # no key anywhere
        (b"m1", b'{"key": "m1", "ts": 1000, "values": {"a": 4.0}}'),
    ]
    frame, bad = messages_frame(msgs)
    assert bad == 3
    assert frame[["timestamp", "key", "a"]].values.tolist() == [
        [100.0, "m1", 1.0],
        [200.0, "m2", 2.0],
        [1000.0, "m1", 4.0],
    ]
    alerts = [
        {"event": "open", "alert_id": "x", "key": "m1", "start": 90.0},
        {"event": "close", "alert_id": "x", "key": "m1", "start": 90.0, "end": 95.0},
        {"event": "open", "alert_id": "y", "key": "m2", "start": 500.0},  # still open: to the end
    ]
    labelled = frame.assign(key=["m1", "m2", "m2"])  # the last reading: during m2's open alert
    assert label_alerts(labelled, alerts, margin_s=10).label.tolist() == [1, 0, 1]  # 100 is within 95 + 10
    assert label_alerts(labelled, alerts, margin_s=4).label.tolist() == [0, 0, 1]
