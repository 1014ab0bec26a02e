from __future__ import annotations

import json

import numpy as np
import pytest

from streamae.evaluation.metrics import (
    evaluate,
    event_metrics,
    events,
    point_adjust,
    point_metrics,
    ranking_metrics,
)

LABELS = np.array([0, 0, 1, 1, 1, 0, 0, 1, 0])
FLAGS = np.array([0, 1, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
TS = 100.0 + 10.0 * np.arange(9)


def _counts(m: dict) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of a point-metrics dict."""
    return tuple(
        m[f"{k}_windows"] for k in ("true_positive", "false_positive", "false_negative", "true_negative")
    )


def test_point_metrics_hand_worked():
    m = point_metrics(LABELS, FLAGS)
    assert _counts(m) == (1, 2, 3, 3)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 4)
    assert m["f1"] == pytest.approx(2 / 7)
    assert m["false_alarm_rate_pct"] == pytest.approx(40.0)  # 2 / 5 normal rows, in percent
    assert m["missed_alarm_rate_pct"] == pytest.approx(75.0)  # 3 / 4 anomalous rows, in percent


def test_point_metrics_zero_denominators():
    m = point_metrics(np.zeros(4), np.zeros(4, dtype=bool))
    assert m == {
        "true_positive_windows": 0,
        "false_positive_windows": 0,
        "false_negative_windows": 0,
        "true_negative_windows": 4,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "false_alarm_rate_pct": 0.0,
        "missed_alarm_rate_pct": 0.0,
    }
    assert point_metrics(np.array([]), np.array([]))["false_alarm_rate_pct"] == 0.0


def test_events_hand_worked():
    assert events(LABELS) == [(2, 5), (7, 8)]
    assert events(np.array([1, 1, 0, 1])) == [(0, 2), (3, 4)]
    assert events(np.zeros(3)) == []
    assert events(np.array([], dtype=bool)) == []


def test_point_adjust_hand_worked():
    got = point_adjust(LABELS, FLAGS)
    np.testing.assert_array_equal(got, [0, 1, 1, 1, 1, 0, 0, 0, 1])
    m = point_metrics(LABELS, got)
    assert _counts(m) == (3, 2, 1, 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["missed_alarm_rate_pct"] == pytest.approx(25.0)


def test_point_adjust_event_at_array_end():
    got = point_adjust(np.array([0, 1, 1, 1]), np.array([0, 0, 0, 1]))
    np.testing.assert_array_equal(got, [0, 1, 1, 1])


def test_event_metrics_hand_worked():
    m = event_metrics(LABELS, FLAGS, TS)
    assert m["labelled_events"] == 2
    assert m["detected_events"] == 1
    assert m["event_recall"] == 0.5
    assert m["detection_delay_mean_s"] == 10.0  # event starts at 120 s, first flag at 130 s
    assert m["detection_delay_median_s"] == 10.0
    assert m["false_alarm_events"] == 2  # rows 1 and 8
    assert m["span_days"] == pytest.approx(80.0 / 86_400)
    assert m["false_alarm_events_per_day"] == pytest.approx(2 * 86_400 / 80.0)


def test_event_delays_mean_and_median():
    labels = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1])
    flags = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0])
    ts = np.arange(15) * 10.0
    m = event_metrics(labels, flags, ts)
    # delays 0, 10, 50 s; the last event (row 14) is missed
    assert (m["labelled_events"], m["detected_events"], m["event_recall"]) == (4, 3, 0.75)
    assert m["detection_delay_mean_s"] == pytest.approx(20.0)
    assert m["detection_delay_median_s"] == 10.0
    assert m["false_alarm_events"] == 0


def test_event_metrics_none_cases():
    m = event_metrics(np.zeros(3), np.array([0, 1, 0]), np.full(3, 5.0))
    assert m["labelled_events"] == 0 and m["event_recall"] is None
    assert m["detection_delay_mean_s"] is None and m["detection_delay_median_s"] is None
    assert m["false_alarm_events"] == 1
    assert m["false_alarm_events_per_day"] is None  # zero time span
    m = event_metrics(np.array([0, 1, 1]), np.zeros(3), np.arange(3.0))
    assert (m["labelled_events"], m["detected_events"], m["event_recall"]) == (1, 0, 0.0)
    assert m["detection_delay_mean_s"] is None


def test_series_boundaries_split_events_and_flag_runs():
    series = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    labels = np.array([0, 1, 1, 1, 1, 0])
    flags = np.array([0, 0, 0, 1, 0, 0])
    assert events(labels) == [(1, 5)]
    assert events(labels, series) == [(1, 3), (3, 5)]
    np.testing.assert_array_equal(point_adjust(labels, flags, series), [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(point_adjust(labels, flags), [0, 1, 1, 1, 1, 0])
    ts = np.array([0.0, 50.0, 100.0, 1000.0, 1100.0, 1200.0])
    m = event_metrics(labels, flags, ts, series)
    assert (m["labelled_events"], m["detected_events"]) == (2, 1)
    assert m["detection_delay_mean_s"] == 0.0
    assert m["span_days"] == pytest.approx(300.0 / 86_400)  # 100 s + 200 s, not 1200 s

    # a flagged run over the boundary with no labels counts once per series
    fa = event_metrics(np.zeros(6), np.array([0, 0, 1, 1, 0, 0]), ts, series)
    assert fa["false_alarm_events"] == 2
    assert fa["false_alarm_events_per_day"] == pytest.approx(2 * 86_400 / 300.0)
    assert event_metrics(np.zeros(6), np.array([0, 0, 1, 1, 0, 0]), ts)["false_alarm_events"] == 1


def test_ranking_metrics_hand_worked():
    perfect = ranking_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect == {"roc_auc": 1.0, "pr_auc_average_precision": 1.0}
    m = ranking_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["roc_auc"] == pytest.approx(3 / 4)  # 3 of 4 (positive, negative) pairs ordered
    assert m["pr_auc_average_precision"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_ranking_metrics_single_class_and_nan():
    none = {"roc_auc": None, "pr_auc_average_precision": None}
    assert ranking_metrics(np.zeros(3), np.arange(3.0)) == none
    assert ranking_metrics(np.ones(3), np.arange(3.0)) == none
    with pytest.raises(ValueError, match="non-finite"):
        ranking_metrics(np.array([0, 1]), np.array([0.1, np.nan]))


def test_length_mismatch_names_lengths():
    with pytest.raises(ValueError, match="labels=9, flags=8"):
        point_metrics(LABELS, FLAGS[:-1])
    with pytest.raises(ValueError, match="timestamps=3"):
        evaluate(LABELS, FLAGS, np.zeros(9), TS[:3])
    with pytest.raises(ValueError, match="series=2"):
        event_metrics(LABELS, FLAGS, TS, np.zeros(2))


def _plain(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    return obj is None or type(obj) in (int, float)


def test_evaluate_combines_and_is_json_ready():
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.4, 0.1, 0.2, 0.35, 0.6])
    out = evaluate(LABELS, FLAGS, scores, TS)
    assert set(out) == {"windows", "point", "point_adjusted", "event", "ranking"}
    assert out["windows"] == 9
    assert out["point"] == point_metrics(LABELS, FLAGS)
    assert _counts(out["point_adjusted"]) == (3, 2, 1, 3)  # as hand-worked in test_point_adjust
    assert out["event"] == event_metrics(LABELS, FLAGS, TS)
    assert out["ranking"] == ranking_metrics(LABELS, scores)
    assert _plain(out)
    assert json.loads(json.dumps(out)) == out


def test_evaluate_pooled_series():
    series = np.repeat([1, 2], 9)
    labels, flags = np.tile(LABELS, 2), np.tile(FLAGS, 2)
    out = evaluate(labels, flags, np.tile(np.arange(9.0), 2), np.tile(TS, 2), series)
    assert out["point"]["true_positive_windows"] == 2
    assert out["event"]["labelled_events"] == 4 and out["event"]["detected_events"] == 2
    assert out["event"]["false_alarm_events_per_day"] == pytest.approx(4 * 86_400 / 160.0)
    assert _plain(out)
