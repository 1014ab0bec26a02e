import pytest

from streamae.core.alerts import AlertPolicy


def scores(key, flags, t0=0.0, hot=5.0):
    return [
        {
            "key": key,
            "window_end": t0 + 60 * i,
            "score": hot if f else 0.5,
            "threshold": 1.0,
            "is_anomaly": bool(f),
            "top_features": [{"feature": "a", "share": 1.0}],
            "model_version": "m",
        }
        for i, f in enumerate(flags)
    ]


def events(policy, msgs):
    return [(i, e["event"]) for i, e in policy.update(msgs)]


def test_opens_on_kth_of_n_and_closes_after_quiet_period():
    p = AlertPolicy(k=3, n=5, quiet_windows=2)
    msgs = scores("m1", [1, 0, 1, 0, 1, 1, 0, 0, 0])
    assert events(p, msgs) == [(4, "open"), (7, "close")]


def test_isolated_hot_windows_do_not_open():
    p = AlertPolicy(k=3, n=5, quiet_windows=2)
    assert events(p, scores("m1", [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0])) == []


def test_keys_are_independent_and_close_carries_span_and_peak():
    p = AlertPolicy(k=2, n=2, quiet_windows=1)
    msgs = scores("a", [1, 1, 0]) + scores("b", [0, 1, 0])
    out = p.update(msgs)
    assert [(e["key"], e["event"]) for _, e in out] == [("a", "open"), ("a", "close")]
    close = out[1][1]
    assert close["start"] == 60.0 and close["end"] == 60.0 and close["peak_score"] == 5.0
    assert close["alert_id"] == out[0][1]["alert_id"]


def test_cooldown_blocks_reopen_in_event_time():
    p = AlertPolicy(k=1, n=1, quiet_windows=1, cooldown_s=300)
    msgs = scores("a", [1, 0, 1, 0, 0, 0, 0, 0, 1])
    assert events(p, msgs) == [(0, "open"), (1, "close"), (8, "open")]


def test_state_carries_across_batches():
    p = AlertPolicy(k=3, n=3, quiet_windows=1)
    msgs = scores("a", [1, 1, 1, 0])
    assert events(p, msgs[:2]) == []
    assert events(p, msgs[2:]) == [(0, "open"), (1, "close")]
    assert p.open_alerts == {}


@pytest.mark.parametrize(
    "ratio,level", [(0.5, "warning"), (1.5, "warning"), (2.0, "major"), (10, "critical")]
)
def test_severity_from_ratio(ratio, level):
    assert AlertPolicy().severity(ratio) == level


def test_invalid_k_n():
    with pytest.raises(ValueError):
        AlertPolicy(k=4, n=3)


def test_snapshot_restore_continues_exactly_like_an_uninterrupted_policy():
    import json

    flags = [0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    msgs = scores("a", flags) + scores("b", flags[::-1])
    msgs.sort(key=lambda m: m["window_end"])
    whole = AlertPolicy(k=3, n=4, quiet_windows=3, cooldown_s=120)
    expected = [e for _, e in whole.update(msgs)]
    for cut in range(len(msgs) + 1):
        first = AlertPolicy(k=3, n=4, quiet_windows=3, cooldown_s=120)
        got = [e for _, e in first.update(msgs[:cut])]
        second = AlertPolicy(k=3, n=4, quiet_windows=3, cooldown_s=120)
        second.restore(json.loads(json.dumps(first.snapshot())))
        got += [e for _, e in second.update(msgs[cut:])]
        assert got == expected, cut


def test_snapshot_keeps_only_keys_that_matter():
    p = AlertPolicy(k=2, n=3, quiet_windows=1)
    p.update(scores("calm", [0, 0, 0]) + scores("warm", [0, 1]))
    assert set(p.snapshot()) == {"warm"}


def test_snapshot_forgets_finished_cooldowns_and_calm_keys():
    p = AlertPolicy(k=1, n=1, quiet_windows=1, cooldown_s=120)
    p.update(scores("a", [1, 0]))  # opens, closes; cooldown until 60 + 120
    assert set(p.snapshot()) == {"a"}
    p.update(scores("a", [0, 0, 0], t0=120))  # key time 240 > 180: cooldown over
    assert p.snapshot() == {} and p.open_alerts == {}
    q = AlertPolicy(k=1, n=1, quiet_windows=1)  # no cooldown at all
    q.update([m | {"key": f"k{i}"} for i, m in enumerate(scores("x", [1, 0] * 50))])
    assert len(q.snapshot()) == 50  # each key's single window opened an alert still open
