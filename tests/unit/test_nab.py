"""NAB scoring checked against hand-worked cases and a literal row-by-row port of NAB's sweeper.

Notation: S(y) = 2 / (1 + exp(5 y)) - 1, S(-1) = 0.9866142981514305 ("maxTP").
Most cases use a 100-row series with timestamps = row numbers, one window on rows 40..59
(width 20) and probation min(floor(0.15 * 100), 750) = 15 rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from streamae.evaluation.nab import (
    PROFILES,
    CostMatrix,
    Series,
    load_corpus,
    normalise,
    null_score,
    perfect_score,
    probation_rows,
    row_weights,
    scaled_sigmoid,
    score_corpus,
    score_detections,
    sweep,
)

NAB_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "nab"
STD = PROFILES["standard"]
LOW_FP = PROFILES["reward_low_FP_rate"]
LOW_FN = PROFILES["reward_low_FN_rate"]
MAX_TP = 0.9866142981514305  # S(-1) = 2 / (1 + e^-5) - 1


def _series(n: int = 100, windows: tuple[tuple[int, int], ...] = ((40, 59),), name: str = "s") -> Series:
    return Series(name=name, timestamps=np.arange(n), windows=windows)


def _det(n: int, *rows: int) -> np.ndarray:
    d = np.zeros(n, dtype=bool)
    d[list(rows)] = True
    return d


@pytest.mark.parametrize(
    "n,expected",
    [
        (100, 15),  # floor(15.000000000000002) = 15
        (7, 1),  # floor(1.05) = 1
        (4032, 604),  # floor(604.8) = 604
        (5000, 750),  # floor(750) = 750 = 0.15 * 5000
        (10320, 750),  # floor(1548) capped at 750
        (0, 0),
    ],
)
def test_probation_rows(n: int, expected: int) -> None:
    assert probation_rows(n) == expected


def test_scaled_sigmoid_values_and_cutoff() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(MAX_TP, abs=1e-15)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.8482836399575131, abs=1e-15)  # 2/(1+e^-2.5)-1
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-MAX_TP, abs=1e-15)
    # y = 3 is still the sigmoid (2/(1+e^15)-1); only y > 3 is the flat -1.
    assert scaled_sigmoid(3.0) == pytest.approx(-0.9999993881955461, abs=1e-15)
    assert scaled_sigmoid(3.0001) == -1.0
    assert scaled_sigmoid(1e6) == -1.0
    got = scaled_sigmoid(np.array([-1.0, 0.0, 4.0]))
    np.testing.assert_allclose(got, [MAX_TP, 0.0, -1.0], atol=1e-15)


def test_detection_at_window_start_scores_a_tp() -> None:
    # position -(59 - 40 + 1)/20 = -1 -> A_tp * S(-1) / maxTP = 1.0 exactly (NAB 1.1 divides by maxTP)
    s = _series()
    assert score_detections(s, _det(100, 40), STD) == pytest.approx(1.0, abs=1e-12)
    assert score_detections(s, _det(100, 40), LOW_FN) == pytest.approx(1.0, abs=1e-12)


def test_detection_at_window_end() -> None:
    # position -(59 - 59 + 1)/20 = -0.05 -> S = tanh(0.125) = 0.12435300177159614; / maxTP = 0.12604013747
    s = _series()
    assert score_detections(s, _det(100, 59), STD) == pytest.approx(0.1260401374727592, abs=1e-12)


def test_only_first_detection_in_window_counts() -> None:
    # Row 45: position -(59 - 45 + 1)/20 = -0.75 -> S = 0.9540452601799487; / maxTP = 0.9669890878000605.
    # Rows 50 and 59 in the same window add nothing (not even an FP).
    s = _series()
    assert score_detections(s, _det(100, 45), STD) == pytest.approx(0.9669890878000605, abs=1e-12)
    assert score_detections(s, _det(100, 45, 50, 59), STD) == pytest.approx(0.9669890878000605, abs=1e-12)
    # Row 50 alone: position -10/20 = -0.5 -> 0.8482836399575131 / maxTP = 0.8597925669097837
    assert score_detections(s, _det(100, 50, 55), STD) == pytest.approx(0.8597925669097837, abs=1e-12)


def test_false_positive_after_window_weighted_by_distance() -> None:
    # Row 65, previous window ends at 59, width 20: position (65 - 59)/(20 - 1) = 6/19,
    # S(6/19) = -0.6581107760257359. Window missed: -1.
    # standard: -1 + 0.11 * -0.65811 = -1.0723921853628309; low FP: -1 + 0.22 * -0.65811 = -1.144784370725662
    s = _series()
    assert score_detections(s, _det(100, 65), STD) == pytest.approx(-1.0723921853628309, abs=1e-12)
    assert score_detections(s, _det(100, 65), LOW_FP) == pytest.approx(-1.144784370725662, abs=1e-12)
    # First row after the window: position 1/19; much closer to the window, so much cheaper.
    assert score_detections(s, _det(100, 60), STD) > score_detections(s, _det(100, 65), STD)


def test_false_positive_uses_closest_preceding_window() -> None:
    # Windows 40..59 and 120..129 (width 10); FP at row 135: position (135 - 129)/(10 - 1) = 2/3,
    # S(2/3) = -0.9311096086675776. Both windows missed: -2 + 0.11 * -0.93111 = -2.1024220569534338
    s = _series(200, ((40, 59), (120, 129)))
    assert score_detections(s, _det(200, 135), STD) == pytest.approx(-2.1024220569534338, abs=1e-12)


def test_false_positive_far_after_window_is_minus_a_fp() -> None:
    # 200 rows (probation 30), window 40..59. Row 116: position 57/19 = 3 -> S(3) = -0.99999939 (not cut).
    # Row 117: 58/19 > 3 -> -1. Window missed: -1 - 0.11 * 1.
    s = _series(200)
    assert score_detections(s, _det(200, 116), STD) == pytest.approx(
        -1 + 0.11 * -0.9999993881955461, abs=1e-12
    )
    assert score_detections(s, _det(200, 117), STD) == pytest.approx(-1.11, abs=1e-12)


def test_false_positive_before_any_window_costs_a_fp() -> None:
    # Row 20: scored (>= 15), no window before it -> -A_fp. Window missed -> -A_fn. -1 - 0.11 = -1.11
    s = _series()
    assert score_detections(s, _det(100, 20), STD) == pytest.approx(-1.11, abs=1e-12)
    assert score_detections(s, _det(100, 20), LOW_FP) == pytest.approx(-1.22, abs=1e-12)


def test_missed_window_costs_a_fn() -> None:
    s = _series()
    nothing = np.zeros(100, dtype=bool)
    assert score_detections(s, nothing, STD) == -1.0
    assert score_detections(s, nothing, LOW_FN) == -2.0


def test_probationary_detections_are_ignored() -> None:
    # Rows 0..14 are probationary: an FP at row 10 or 14 costs nothing; row 15 is scored (-1 - 0.11).
    s = _series()
    assert score_detections(s, _det(100, 10, 14), STD) == -1.0
    assert score_detections(s, _det(100, 15), STD) == pytest.approx(-1.11, abs=1e-12)


def test_window_partly_in_probation_keeps_full_width() -> None:
    # Window 10..29 (width 20), probation 15 rows. A detection at row 12 is ignored -> missed, -1.
    # Row 15 counts at position -(29 - 15 + 1)/20 = -0.75 (full width): 0.9669890878000605.
    s = _series(100, ((10, 29),))
    assert score_detections(s, _det(100, 12), STD) == -1.0
    assert score_detections(s, _det(100, 12, 15), STD) == pytest.approx(0.9669890878000605, abs=1e-12)


def test_window_inside_probation_counts_nothing_but_stays_in_perfect() -> None:
    # Window 2..11 lies in the probation (15 rows): NAB gives it no score part (no FN), so the null
    # score ignores it, while Runner.normalize's perfect score still counts it (A_tp * windows).
    s = _series(100, ((2, 11), (40, 59)))
    assert score_detections(s, np.zeros(100, dtype=bool), STD) == -1.0
    assert null_score([s], STD) == -1.0
    assert perfect_score([s], STD) == 2.0


def test_row_weights_sides_of_a_window() -> None:
    rw = row_weights(_series(), STD)
    assert rw.n_windows == 1
    assert list(np.flatnonzero(rw.window == 0)) == list(range(40, 60))
    assert not rw.scored[:15].any() and rw.scored[15:].all()
    assert rw.weight[39] == pytest.approx(-0.11)  # before any window
    # In-window weights fall monotonically from 1.0: the earliest detection is always the best.
    assert np.all(np.diff(rw.weight[40:60]) < 0)


def test_threshold_rule_is_greater_or_equal() -> None:
    # util.convertAnomalyScoresToDetections: score >= threshold is a detection.
    s = _series()
    scores = np.zeros(100)
    scores[40] = 0.5
    assert score_corpus([(s, scores)], STD, 0.5)["s"] == pytest.approx(1.0, abs=1e-12)
    assert score_corpus([(s, scores)], STD, 0.5000001)["s"] == -1.0


def test_normalisation_perfect_is_100_and_null_is_0() -> None:
    # Two series, three windows. Perfect: a detection at each window's first row and nowhere else
    # -> raw = 3 * 1.0 = perfect. Null: never fires -> raw = -3 = null.
    a = _series(100, ((40, 59),), "a")
    b = _series(200, ((50, 69), (120, 139)), "b")
    perfect_scores = [(a, _det(100, 40).astype(float)), (b, _det(200, 50, 120).astype(float))]
    res = sweep(perfect_scores, STD)
    assert (res.null, res.perfect) == (-3.0, 3.0)
    assert res.threshold == 1.0
    assert res.raw == pytest.approx(3.0, abs=1e-12)
    assert res.normalised == pytest.approx(100.0, abs=1e-9)
    assert res.per_series == pytest.approx({"a": 1.0, "b": 2.0}, abs=1e-12)
    # A constant score (NAB's null detector gives 0.5 everywhere): flagging every row is far worse
    # than flagging none, so the sweep keeps "detect nothing" and scores exactly 0.
    const = [(a, np.full(100, 0.5)), (b, np.full(200, 0.5))]
    res = sweep(const, LOW_FN)
    assert res.threshold == math.inf
    assert res.raw == res.null == -6.0
    assert res.normalised == 0.0
    assert normalise(-3.0, -3.0, 3.0) == 0.0
    assert normalise(0.0, -3.0, 3.0) == 50.0


def test_sweep_hand_worked() -> None:
    # 100 rows, window 40..59. Scores: row 40 -> 0.9 (TP at start), row 70 -> 0.8 (FP, position
    # 11/19, S = -0.895171292277083), row 20 -> 0.7 (FP, no window before), rest 0.
    # Candidates (descending): inf -> -1 (missed); 0.9 -> 1.0; 0.8 -> 1 + 0.11 * S(11/19) = 0.90153;
    # 0.7 -> 0.90153 - 0.11 = 0.79153; 0.0 -> every scored row. Best: 0.9 with raw 1.0, i.e.
    # 100 * (1 - (-1)) / (1 - (-1)) = 100.
    s = _series()
    scores = np.zeros(100)
    scores[[40, 70, 20]] = [0.9, 0.8, 0.7]
    res = sweep([(s, scores)], STD)
    assert list(res.thresholds[:4]) == [math.inf, 0.9, 0.8, 0.7]
    np.testing.assert_allclose(
        res.raw_by_threshold[:4], [-1.0, 1.0, 0.9015311578495209, 0.9015311578495209 - 0.11], atol=1e-12
    )
    assert res.threshold == 0.9
    assert res.normalised == pytest.approx(100.0, abs=1e-9)


def test_sweep_ties_go_to_the_highest_threshold() -> None:
    # Rows 40 (0.9) and 45 (0.6) are in the same window; lowering the threshold from 0.9 to 0.6 adds
    # nothing, so both score 1.0 and NAB's stable sort keeps the first (highest) threshold.
    s = _series()
    scores = np.zeros(100)
    scores[[40, 45]] = [0.9, 0.6]
    res = sweep([(s, scores)], STD)
    assert res.raw_by_threshold[1] == res.raw_by_threshold[2]
    assert res.threshold == 0.9


def _nab_reference(corpus: list[tuple[Series, np.ndarray]], cm: CostMatrix) -> tuple[list, list]:
    """Row-by-row port of Sweeper.calcSweepScore + calcScoreByThreshold (plain Python loops)."""
    points = []  # (anomaly score, sweep score, window name or None)
    for series, scores in corpus:
        ts = list(series.timestamps)
        limits = list(series.windows)
        prob = min(math.floor(0.15 * len(ts)), 0.15 * 5000)
        cur = name = right = width = prev_right = prev_width = None
        for i, (t, a) in enumerate(zip(ts, scores)):
            if limits and t == limits[0][0]:
                cur = limits.pop(0)
                name = f"{series.name}|{cur[0]}"
                right = ts.index(cur[1])
                width = float(right - ts.index(cur[0]) + 1)
            if cur is not None:
                w = scaled_sigmoid(-(right - i + 1) / width) * cm.tp / scaled_sigmoid(-1.0)
            elif prev_right is None:
                w = -1.0 * cm.fp
            else:
                w = scaled_sigmoid(abs(prev_right - i) / float(prev_width - 1)) * cm.fp
            if i >= prob:
                points.append((float(a), w, name))
            if cur is not None and t == cur[1]:
                prev_right, prev_width = i, width
                cur = name = right = width = None
    points.sort(key=lambda p: p[0], reverse=True)
    parts: dict[str | None, float] = {"fp": 0.0}
    for _, _, name in points:
        if name is not None:
            parts[name] = -cm.fn
    thresholds, raws = [], []
    cur_t = math.inf
    for a, w, name in points:
        if a != cur_t:
            thresholds.append(cur_t)
            raws.append(sum(parts.values()))
            cur_t = a
        if name is None:
            parts["fp"] += w
        else:
            parts[name] = max(parts[name], w)
    thresholds.append(cur_t)
    raws.append(sum(parts.values()))
    return thresholds, raws


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("profile", ["standard", "reward_low_FP_rate", "reward_low_FN_rate"])
def test_sweep_matches_row_by_row_reference(seed: int, profile: str) -> None:
    rng = np.random.default_rng(seed)
    corpus = []
    for k in range(4):
        n = int(rng.integers(40, 160))
        # 0-2 disjoint windows of 3-15 rows anywhere (some inside the probation period).
        cuts = np.sort(rng.choice(np.arange(1, n - 1), size=4, replace=False))
        windows = tuple((int(a), int(min(b, a + int(rng.integers(2, 15))))) for a, b in cuts.reshape(2, 2))[
            : int(rng.integers(0, 3))
        ]
        scores = np.round(rng.random(n), 2)  # rounded: many ties between rows
        corpus.append((_series(n, windows, f"f{k}"), scores))
    cm = PROFILES[profile]
    ref_t, ref_raw = _nab_reference(corpus, cm)
    res = sweep(corpus, cm)
    np.testing.assert_array_equal(res.thresholds, ref_t)
    np.testing.assert_allclose(res.raw_by_threshold, ref_raw, rtol=0, atol=1e-9)
    # Brute force: every candidate threshold scored series by series; first maximum wins.
    brute = [sum(score_corpus(corpus, cm, t).values()) for t in ref_t]
    np.testing.assert_allclose(brute, ref_raw, rtol=0, atol=1e-9)
    assert res.threshold == ref_t[int(np.argmax(ref_raw))]
    assert res.raw == pytest.approx(max(ref_raw), abs=1e-9)


def test_load_corpus_reads_a_tiny_nab_layout(tmp_path: Path) -> None:
    # NAB's layout: data/<category>/<file>.csv and labels/combined_windows.json (limits as text).
    (tmp_path / "data" / "b").mkdir(parents=True)
    (tmp_path / "data" / "a").mkdir()
    (tmp_path / "labels").mkdir()
    stamps = [f"2014-04-01 00:0{i}:00" for i in range(6)] + ["2014-04-01 00:05:00"]  # one repeated
    (tmp_path / "data" / "b" / "two.csv").write_text(
        "timestamp,value\n" + "".join(f"{t},{i}\n" for i, t in enumerate(stamps))
    )
    (tmp_path / "data" / "a" / "one.csv").write_text("timestamp,value\n2014-04-01 00:00:00,1\n")
    windows = {
        "b/two.csv": [
            ["2014-04-01 00:01:00.000000", "2014-04-01 00:02:00.000000"],
            ["2014-04-01 00:05:00", "2014-04-01 00:05:00"],
        ],
        "a/one.csv": [],
    }
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    corpus = load_corpus(tmp_path)
    assert [s.name for s in corpus] == ["a/one.csv", "b/two.csv"]
    two = corpus[1]
    assert two.timestamps.dtype == np.dtype("datetime64[ns]") and two.n_rows == 7
    assert two.windows[0] == (np.datetime64("2014-04-01T00:01"), np.datetime64("2014-04-01T00:02"))
    # a repeated timestamp maps to its first row, as NAB's sweeper finds it
    assert two.window_rows().tolist() == [[1, 2], [5, 5]]
    assert corpus[0].windows == () and corpus[0].window_rows().shape == (0, 2)


def test_load_corpus_reads_shared_nab_data() -> None:
    # The NAB corpus comes with the project's shared folder beside the clone; a missing one is
    # a broken checkout, not a reason to skip.
    assert NAB_ROOT.is_dir(), (
        f"no NAB data at {NAB_ROOT}: this test needs the project's shared/ folder beside the "
        "repository (shared/datasets/nab, as CI lays it out)"
    )
    corpus = load_corpus(NAB_ROOT)
    assert len(corpus) == 58
    assert sum(len(s.windows) for s in corpus) == 116
    by_name = {s.name: s for s in corpus}
    taxi = by_name["realKnownCause/nyc_taxi.csv"]
    assert taxi.n_rows == 10320 and len(taxi.windows) == 5
    assert taxi.timestamps.dtype == np.dtype("datetime64[ns]")
    assert taxi.windows[0] == (np.datetime64("2014-10-30T15:30"), np.datetime64("2014-11-03T22:30"))
    assert probation_rows(taxi.n_rows) == 750
    jumps = by_name["artificialWithAnomaly/art_daily_jumpsup.csv"]
    assert probation_rows(jumps.n_rows) == 604  # 4032 rows: floor(604.8)
    for s in corpus:  # every window limit is a row timestamp, windows ordered and disjoint
        s.window_rows()
    # NAB's own null detector scores -116 (standard) and -232 (reward_low_FN_rate) in
    # config/thresholds.json: every one of the 116 windows has scored rows.
    assert null_score(corpus, STD) == -116.0
    assert null_score(corpus, LOW_FN) == -232.0
    assert perfect_score(corpus, STD) == 116.0
