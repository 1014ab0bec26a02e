import numpy as np
import pytest

from streamae.core.readings import Readings
from streamae.core.windows import WindowStore


def _readings(keys, values, offsets=None) -> Readings:
    n = len(keys)
    return Readings(
        keys=np.array(keys, dtype=object),
        ts=np.arange(n, dtype=np.float64) * 10,
        values=np.asarray(values, dtype=np.float32),
        offsets=np.arange(n, dtype=np.int64) if offsets is None else np.asarray(offsets),
        topic="t",
        partition=0,
    )


def _naive(keys, values, window, stride):
    """Reference: per key, windows ending at counts w, w+s, w+2s, …"""
    out = {}
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        out[key] = [
            (idx[e - window + 1 : e + 1], values[idx[e - window + 1 : e + 1]])
            for e in range(window - 1, len(idx), stride)
        ]
    return out


@pytest.mark.parametrize("window,stride", [(1, 1), (4, 1), (5, 3), (3, 5)])
@pytest.mark.parametrize("chunks", [1, 3, 17])
def test_windows_match_reference_regardless_of_batching(window, stride, chunks):
    rng = np.random.default_rng(0)
    n = 200
    keys = rng.choice(["a", "b", "c"], n).tolist()
    values = rng.normal(size=(n, 2)).astype(np.float32)
    store = WindowStore(window, stride, 2)
    got: dict[str, list] = {}
    for part in np.array_split(np.arange(n), chunks):
        r = _readings([keys[i] for i in part], values[part], offsets=part)
        w = store.push(r)
        assert w.data.shape[1:] == (window, 2)
        for i in range(len(w)):
            got.setdefault(w.keys[i], []).append((w.first_offset[i], w.last_offset[i], w.data[i]))
    ref = _naive(keys, values, window, stride)
    assert set(got) == {k for k, v in ref.items() if v}
    for key, expected in ref.items():
        assert len(got.get(key, [])) == len(expected)
        for (first, last, data), (idx, vals) in zip(got.get(key, []), expected):
            assert (first, last) == (idx[0], idx[-1])
            np.testing.assert_array_equal(data, vals)


def test_window_times_and_oldest_offset():
    store = WindowStore(3, 1, 1)
    w = store.push(_readings(["a"] * 4 + ["b"] * 2, np.arange(6).reshape(-1, 1)))
    assert w.keys.tolist() == ["a", "a"]
    assert w.start_ts.tolist() == [0.0, 10.0] and w.end_ts.tolist() == [20.0, 30.0]
    # a keeps offsets 2,3 for its next window; b keeps 4,5 — replay must start at 2
    assert store.oldest_offset() == 2
    assert len(store) == 2


def test_empty_push_and_validation():
    store = WindowStore(3, 1, 2)
    assert len(store.push(Readings.empty(2))) == 0
    assert store.oldest_offset() is None
    with pytest.raises(ValueError):
        WindowStore(0, 1, 2)


def _at(keys, ts, offsets):
    n = len(keys)
    return Readings(
        np.array(keys, dtype=object),
        np.asarray(ts, dtype=np.float64),
        np.zeros((n, 1), np.float32),
        np.asarray(offsets),
        "t",
        0,
    )


def test_idle_keys_are_forgotten_and_stop_holding_the_offset_back():
    store = WindowStore(3, 1, 1, idle_ttl_s=60)
    store.push(_at(["quiet"], [0.0], [0]))
    store.push(_at(["busy"] * 5 + ["other"], [10, 20, 30, 40, 100, 100], [1, 2, 3, 4, 5, 6]))
    assert store.oldest_offset() == 0
    assert len(store.evict_idle()) == 1  # quiet: last seen at 0; median latest time is 100
    assert store.oldest_offset() == 4 and len(store) == 2
    assert WindowStore(3, 1, 1).evict_idle() == []  # ttl 0: never


def test_one_bogus_future_timestamp_does_not_evict_everyone():
    store = WindowStore(3, 1, 1, idle_ttl_s=60)
    store.push(_at(["a", "b", "c"], [100, 100, 1e12], [0, 1, 2]))
    assert store.evict_idle() == []


def test_no_window_spans_a_silence_longer_than_the_ttl():
    store = WindowStore(3, 1, 1, idle_ttl_s=60)
    store.push(_at(["a", "a"], [0, 10], [0, 1]))
    w = store.push(_at(["a", "a", "a"], [1000, 1010, 1020], [2, 3, 4]))
    assert w.first_offset.tolist() == [2]  # not (0, 1, 2) across the gap
