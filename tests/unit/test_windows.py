import numpy as np
import pytest

from streamae.readings import Readings
from streamae.windows import WindowStore


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


def test_idle_keys_are_forgotten_and_stop_holding_the_offset_back():
    store = WindowStore(3, 1, 1)
    store.push(_readings(["quiet"], [[0.0]]))  # ts 0, offset 0
    busy = Readings(
        keys=np.array(["busy"] * 5, dtype=object),
        ts=np.array([10.0, 20, 30, 40, 100]),
        values=np.zeros((5, 1), np.float32),
        offsets=np.arange(1, 6),
        topic="t",
        partition=0,
    )
    store.push(busy)
    assert store.oldest_offset() == 0
    assert store.evict_idle(1000) == 0
    assert store.evict_idle(60) == 1  # quiet: last seen at 0, newest time is 100
    assert store.oldest_offset() == 4 and len(store) == 1
