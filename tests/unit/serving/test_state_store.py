"""The state store: a versioned document on the compacted topic, read back defensively."""

from __future__ import annotations

import logging

import orjson
from memory_transport import MemoryTransport

from streamae.core.alerts import AlertPolicy
from streamae.serving.commit import state_store
from streamae.serving.commit.state_store import FORMAT, SavedState, StateStore, decode, encode, state_key
from streamae.serving.transport import Partition, TransportTimeout

P = Partition("in", 1)


def policy_with_an_open_alert() -> AlertPolicy:
    policy = AlertPolicy(k=1, n=1, quiet_windows=3)
    msg = {
        "key": "m1",
        "window_start": 0.0,
        "window_end": 60.0,
        "score": 9.0,
        "threshold": 1.0,
        "model_version": "v",
    }
    policy.update([{**msg, "is_anomaly": True, "raw_score": 9.0, "top_features": []}])
    return policy


def test_round_trip_carries_the_format_and_restores_an_open_alert():
    policy = policy_with_an_open_alert()
    state = SavedState(41, policy.snapshot(), {"m1": 0.5})
    value = encode(state)
    assert value is not None and orjson.loads(value)["format"] == FORMAT
    back = decode(value)
    assert back == state
    restored = AlertPolicy(k=1, n=1, quiet_windows=3)
    restored.restore(back.alerts)
    assert restored.open_alerts == policy.open_alerts and len(policy.open_alerts) == 1


def test_a_tombstone_is_no_state():
    assert decode(None) is None


def test_documents_from_before_the_format_field_are_read(caplog):
    old = orjson.dumps({"scored_through": 7, "alerts": {}})  # format 0, no smoothing yet
    assert decode(old) == SavedState(7, {}, {})
    assert not caplog.records


def test_a_newer_format_or_garbage_means_a_fresh_start_with_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    newer = orjson.dumps({"format": FORMAT + 1, "scored_through": 7, "alerts": {}, "shape": "new"})
    assert decode(newer, P) is None
    assert "format 2" in caplog.text and "in[1]" in caplog.text
    no_scored_through = orjson.dumps({"format": 1, "alerts": {}})
    for bad in (b"{oops", b"[1, 2]", no_scored_through, orjson.dumps({"format": True})):
        assert decode(bad) is None
    assert len(caplog.records) == 5


def test_oversized_state_drops_smoothing_first_then_is_not_saved(monkeypatch, caplog):
    monkeypatch.setattr(state_store, "MAX_STATE_BYTES", 400)
    alerts = policy_with_an_open_alert().snapshot()
    big_smoothing = {f"key-{i}": 0.5 for i in range(100)}
    value = encode(SavedState(3, alerts, big_smoothing))
    assert value is not None and decode(value) == SavedState(3, alerts, {})
    assert encode(SavedState(3, {f"k{i}": alerts["m1"] for i in range(20)}, {})) is None
    assert "not saved" in caplog.text


class _Sender:
    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport

    def send(self, topic, key, value, headers=(), partition=None) -> None:
        self.transport.send(topic, key, value, headers, partition)
        self.transport.flush(1)


def test_load_uses_only_the_state_saved_with_the_commit_it_resumes_from():
    t = MemoryTransport()
    store = StateStore(t, "state")
    store.save(_Sender(t), P, SavedState(41, {}, {"m1": 0.5}))
    assert [r.partition for r in t.records("state")] == [1]  # input partition p → state partition p
    assert store.load(P, 41) == SavedState(41, {}, {"m1": 0.5})
    assert store.load(P, 40) is None  # saved by a commit that then failed
    assert store.load(Partition("other", 1), 41) is None  # another input's key


def test_load_of_a_tombstone_or_an_unreadable_partition_is_no_state(caplog):
    t = MemoryTransport()
    t.produce("state", 1, state_key(P), None)
    assert StateStore(t, "state").load(P, 41) is None

    def unreadable(partition, timeout_s):
        raise TransportTimeout("no answer")

    t.read_last = unreadable
    assert StateStore(t, "state").load(P, 41) is None
    assert "starting fresh" in caplog.text
