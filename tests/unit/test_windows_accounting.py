"""Every reading ends in a window, in the discarded list with a reason, or is still held —
whatever the batch boundaries — and windows are the same however the stream is batched."""

from __future__ import annotations

import numpy as np
import pytest

from streamae.core.readings import Readings
from streamae.core.windows import WindowStore


def readings(keys, ts, offsets) -> Readings:
    n = len(keys)
    values = np.asarray(offsets, np.float32).reshape(-1, 1) * np.ones((1, 2), np.float32)
    return Readings(
        np.array(keys, dtype=object), np.asarray(ts, float), values[:n], np.asarray(offsets), "t", 0
    )


def reference(keys, ts, window, stride, ttl):
    """Per key: split at silences longer than ttl after the key's latest time so far;
    windows end at counts w, w+s, … of each run; a run followed by a silence discards its
    readings after its last window; the last run holds its last w - 1 readings."""
    windows, discarded, held = set(), set(), set()
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        runs, run, latest = [], [idx[0]], ts[idx[0]]
        for b in idx[1:]:
            if ttl and ts[b] - latest > ttl:
                runs.append(run)
                run = []
            latest = max(latest, ts[b])
            run.append(b)
        runs.append(run)
        for r, run in enumerate(runs):
            ends = list(range(window - 1, len(run), stride))
            windows.update((run[e - window + 1], run[e]) for e in ends)
            covered = {i for e in ends for i in run[e - window + 1 : e + 1]}
            rest = {i for i in run if i not in covered and (not ends or i > run[ends[-1]])}
            if r < len(runs) - 1:
                discarded.update(rest)
            else:  # what the key holds for its next window
                held.update(run[len(run) - min(window - 1, len(run)) :])
    return windows, discarded, held


@pytest.mark.parametrize("window,stride", [(1, 1), (5, 1), (4, 3), (6, 2)])
@pytest.mark.parametrize("seed", range(6))
def test_windows_and_discards_match_the_reference_for_any_batching(window, stride, seed):
    rng = np.random.default_rng(seed)
    n, ttl = 400, 100.0
    keys = rng.choice(["a", "b", "c", "d"], n).tolist()
    steps = np.where(rng.random(n) < 0.03, rng.uniform(150, 1e6, n), rng.uniform(-5, 20, n))
    ts = 1e9 + np.cumsum(steps)
    bogus = rng.random(n) < 0.02  # single readings stamped far in the past
    ts[bogus] -= rng.uniform(150, 1e6, int(bogus.sum()))
    ts = ts.tolist()
    ref_windows, ref_discarded, ref_held = reference(keys, ts, window, stride, ttl)
    for cuts in (1, 7, n):
        store = WindowStore(window, stride, 2, idle_ttl_s=ttl)
        got, discarded = set(), set()
        for part in np.array_split(np.arange(n), cuts):
            w = store.push(readings([keys[i] for i in part], [ts[i] for i in part], part))
            # column 0 of each reading is its offset: a window's rows are its own readings
            assert w.data[:, 0, 0].tolist() == w.first_offset.tolist()
            assert w.data[:, -1, 0].tolist() == w.last_offset.tolist()
            got.update(zip(w.first_offset.tolist(), w.last_offset.tolist()))
            for d in store.drain_discarded():
                assert all("more than STREAMAE_WINDOWS__IDLE_TTL_S=100" in r for r in d.reasons)
                discarded.update(d.readings.offsets.tolist())
        assert got == ref_windows
        assert discarded == ref_discarded
        assert store.oldest_offset() == (min(ref_held) if ref_held else None)


def test_a_far_future_timestamp_gives_the_same_windows_however_the_stream_is_cut():
    # the reproduction of a silent loss: 61 readings, the 31st far in the future
    ts = [1e9 + 10 * i for i in range(61)]
    ts[30] = 1e15
    counts = []
    for cut in (None, 30, 31, 45):
        store = WindowStore(20, 1, 2, idle_ttl_s=7 * 86400)
        parts = [range(61)] if cut is None else [range(cut), range(cut, 61)]
        n = sum(len(store.push(readings(["k"] * len(p), [ts[i] for i in p], list(p)))) for p in parts)
        assert store.drain_discarded() == []  # the first run had completed its windows
        counts.append(n)
    assert counts == [11 + 12] * 4


def test_readings_of_a_window_cut_by_a_silence_are_discarded_with_the_reason():
    store = WindowStore(5, 1, 2, idle_ttl_s=60)
    store.push(readings(["k", "k", "k"], [0, 10, 20], [0, 1, 2]))
    w = store.push(readings(["k"] * 5, [1000, 1010, 1020, 1030, 1040], [3, 4, 5, 6, 7]))
    assert w.first_offset.tolist() == [3]
    (d,) = store.drain_discarded()
    assert d.readings.offsets.tolist() == [0, 1, 2]
    assert d.causes.tolist() == [3, 3, 3]  # the reading after the silence
    assert d.reasons[0].startswith("its key then sent nothing for 980 s of event time")


@pytest.mark.parametrize("cut", [None, 2, 4])
def test_a_discarded_reading_from_a_list_record_keeps_its_index_in_the_list(cut):
    # one record (offset 7) held four readings: its dead letters must say which ones
    r = readings(["k", "j", "k", "k", "k", "k"], [0, 0, 10, 20, 1000, 1001], [7, 7, 7, 7, 8, 9])
    r = Readings(r.keys, r.ts, r.values, r.offsets, "t", 0, np.array([0, 1, 2, 3, -1, -1], np.int32))
    store = WindowStore(5, 1, 2, idle_ttl_s=60)
    for part in (np.arange(6),) if cut is None else (np.arange(cut), np.arange(cut, 6)):
        store.push(Readings(r.keys[part], r.ts[part], r.values[part], r.offsets[part], "t", 0, r.index[part]))
    (d,) = store.drain_discarded()
    assert list(zip(d.readings.offsets.tolist(), d.readings.indices().tolist())) == [(7, 0), (7, 2), (7, 3)]


def test_forgetting_an_idle_key_discards_its_partial_window():
    store = WindowStore(3, 1, 2, idle_ttl_s=60)
    store.push(readings(["quiet"], [0.0], [0]))
    store.push(readings(["busy"] * 5 + ["other"], [10, 20, 30, 40, 100, 100], [1, 2, 3, 4, 5, 6]))
    assert store.evict_idle() == ["quiet"]
    (d,) = store.drain_discarded()
    assert d.readings.offsets.tolist() == [0] and d.readings.keys.tolist() == ["quiet"]
    assert "was forgotten" in d.reasons[0]
    assert store.oldest_offset() == 4


def test_slots_are_reused_and_grow_past_the_initial_capacity():
    store = WindowStore(2, 1, 2, idle_ttl_s=10)
    keys = [f"k{i}" for i in range(1000)]
    store.push(readings(keys, [0.0] * 1000, range(1000)))
    assert len(store) == 1000 and store.oldest_offset() == 0
    late = keys[499:]
    store.push(readings(late, [100.0] * len(late), range(1000, 1000 + len(late))))
    assert len(store.evict_idle()) == 499 and len(store) == 501
    reasons = [r for d in store.drain_discarded() for r in d.reasons]  # silence > ttl, or forgotten
    assert sum("was forgotten" in r for r in reasons) == 499 and len(reasons) == 1000
    slots = len(store._held)
    w = store.push(readings(keys[:2], [103.0, 103.0], [2000, 2001]))
    assert len(w) == 0 and len(store) == 503 and len(store._held) == slots


def test_out_of_order_and_duplicate_readings_are_windowed_in_arrival_order_and_never_reset_the_key():
    # a duplicate (same time), one an hour back, one a year back: the key's run goes on
    ts = [1e9 + 10 * i for i in range(12)]
    ts[4] = ts[3]
    ts[7] = ts[6] - 3600
    ts[9] = ts[8] - 365 * 86400
    store = WindowStore(5, 1, 2, idle_ttl_s=60)
    for part in (range(0, 5), range(5, 12)):
        w = store.push(readings(["k"] * len(part), [ts[i] for i in part], list(part)))
        # column 0 of each reading is its offset: windows hold readings in arrival order
        assert all(row[:, 0].tolist() == list(range(int(row[0, 0]), int(row[0, 0]) + 5)) for row in w.data)
    assert store.drain_discarded() == []
    assert w.last_offset.tolist() == list(range(5, 12))
    assert w.end_ts.tolist() == [ts[i] for i in range(5, 12)]
