"""Evaluation reports (``streamae evaluate``).

Evaluation scores a labelled readings file exactly as ``streamae score`` does, gives each
window the label of its last reading (the reading the daemon would alert on), runs the
configured alert policy over the scores, and measures point, point-adjusted, event and
ranking quality (``evaluation.metrics``, whose names ``report.json`` keeps) per series
(key) and pooled over all series.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamae.core.alerts import AlertPolicy
from streamae.core.config import AlertSettings, Settings, load_settings
from streamae.core.offline import score_frame
from streamae.core.readings import DataError, read_table
from streamae.core.scoring import Scorer
from streamae.evaluation.metrics import evaluate
from streamae.evaluation.plots import label_spans, plot_scores

REPORT_JSON = "report.json"
#: Ranking metrics judge the model's own error, before any EWMA smoothing of the detector.
RANKING_SCORE = "raw_score"

DEFINITIONS = {
    "windows": "scored windows; each carries the label of its last reading",
    "point": "per-window confusion counts and rates of is_anomaly against the label",
    "point_adjusted": "as point, after marking a whole labelled event detected when any of its "
    "windows is flagged (Xu et al. 2018); optimistic, reported beside point, never instead",
    "event": "a labelled event is a run of labelled windows; delay runs from its first window to "
    "its first flagged one; a false-alarm event is a run of flagged windows with no label",
    "ranking": f"threshold-free ROC-AUC and average precision of {RANKING_SCORE}; "
    "null when the labels hold one class",
}


@dataclass(frozen=True)
class AlertSpan:
    """An alert of the configured policy: first and last over-threshold window end times."""

    key: str
    start: float
    end: float
    closed: bool  # False: still open when the data ended


@dataclass(frozen=True)
class Report:
    """The outcome of evaluating one bundle on one labelled readings file."""

    bundle: str
    model_version: str
    variant: str
    threshold: dict[str, Any]
    data: str
    rows_scored: int
    alerts_opened: int
    alerts: list[AlertSpan]
    pooled: dict[str, Any]
    per_series: dict[str, dict[str, Any]]
    scores: pd.DataFrame = field(repr=False)  # score rows plus their 0/1 'label'
    label_spans: pd.DataFrame = field(repr=False)  # key, start, end of labelled runs
    plots: dict[str, str] = field(default_factory=dict)  # key → PNG path

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready content of ``report.json``."""
        return {
            "bundle": self.bundle,
            "model_version": self.model_version,
            "variant": self.variant,
            "threshold": self.threshold,
            "data": self.data,
            "rows_scored": self.rows_scored,
            "alerts_opened": self.alerts_opened,
            "alerts": [asdict(a) for a in self.alerts],
            "ranking_score": RANKING_SCORE,
            "definitions": DEFINITIONS,
            "pooled": self.pooled,
            "per_series": self.per_series,
            "plots": self.plots,
        }


def row_labels(frame: pd.DataFrame, source: str) -> np.ndarray | None:
    """The ``label`` column as 0/1 per row (>0 is anomalous), or None when there is none."""
    if "label" not in frame.columns:
        return None
    col = frame["label"]
    if not pd.api.types.is_numeric_dtype(col) or col.isna().any():
        bad = col.isna() | pd.to_numeric(col, errors="coerce").isna()
        row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        raise DataError(
            f"{source}: column 'label' must be numbers (0 normal, >0 anomalous); row {row} is not"
        )
    return (col.to_numpy() > 0).astype(np.int8)


def required_labels(frame: pd.DataFrame, source: str) -> np.ndarray:
    """:func:`row_labels`, which evaluation cannot do without."""
    labels = row_labels(frame, source)
    if labels is None:
        raise DataError(
            f"{source}: no 'label' column (0 normal, >0 anomalous) to evaluate against "
            f"(columns: {list(frame.columns)})"
        )
    return labels


def alert_spans(scores: pd.DataFrame, cfg: AlertSettings) -> tuple[int, list[AlertSpan]]:
    """Run the alert policy over score rows (file order, so per-key time order)."""
    policy = AlertPolicy(cfg.k, cfg.n, cfg.quiet_windows, cfg.cooldown_s, cfg.severity_ratios)
    cols = ["key", "window_end", "score", "threshold", "is_anomaly", "top_features", "model_version"]
    events = [e for _, e in policy.update(scores[cols].to_dict("records"))]
    spans = [AlertSpan(e["key"], e["start"], e["end"], True) for e in events if e["event"] == "close"]
    spans += [
        AlertSpan(key, s["open"]["start"], s["open"]["end"], False)
        for key, s in policy.snapshot().items()
        if s["open"] is not None
    ]
    spans.sort(key=lambda a: (a.key, a.start))
    return sum(e["event"] == "open" for e in events), spans


def evaluate_frame(
    frame: pd.DataFrame,
    scorer: Scorer,
    alerts: AlertSettings,
    source: str,
    bundle: str = "",
    top_k: int = 3,
    idle_ttl_s: float = 0.0,
) -> Report:
    """Score a labelled readings frame (as ``streamae score`` does) and measure detection
    quality per key and pooled."""
    labels = required_labels(frame, source)
    m = scorer.manifest
    scores = score_frame(frame, scorer, source, top_k, idle_ttl_s)
    if scores.empty:
        raise DataError(f"{source}: no key has a complete window of {m.window} readings to score")
    # offsets are row numbers of the frame: the window's last reading is its row
    scores["label"] = labels[scores["source_offset_end"].to_numpy()]
    opened, spans = alert_spans(scores, alerts)

    # stable sort keeps each key's file (time) order; series then lie in contiguous blocks
    ordered = scores.sort_values("key", kind="stable")
    arrays = {
        "labels": ordered["label"].to_numpy(),
        "flags": ordered["is_anomaly"].to_numpy(dtype=bool),
        "scores": ordered[RANKING_SCORE].to_numpy(dtype=np.float64),
        "timestamps": ordered["window_end"].to_numpy(dtype=np.float64),
    }
    keys = ordered["key"].to_numpy(dtype=object)
    pooled = evaluate(**arrays, series=keys)
    uniq, first = np.unique(keys, return_index=True)
    bounds = np.append(first, len(keys))
    per_series = {
        str(key): evaluate(**{k: a[lo:hi] for k, a in arrays.items()})
        for key, lo, hi in zip(uniq, bounds[:-1], bounds[1:])
    }
    return Report(
        bundle=bundle,
        model_version=m.model_version,
        variant=m.variant,
        threshold=m.threshold.model_dump(),
        data=source,
        rows_scored=len(scores),
        alerts_opened=opened,
        alerts=spans,
        pooled=pooled,
        per_series=per_series,
        scores=scores,
        label_spans=label_spans(frame),
    )


def safe_name(key: str) -> str:
    """A file name for a key: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip(".") or "_"


def write_report(report: Report, out_dir: Path) -> Report:
    """Write ``report.json`` and one score plot per series to ``out_dir``; the report with
    its plot paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    used: set[str] = set()
    for key, rows in report.scores.groupby("key", sort=True):
        name = safe_name(str(key))
        while name.lower() in used:  # two keys that sanitise alike must not overwrite
            name += "_"
        used.add(name.lower())
        path = plot_scores(
            rows,
            out_dir / f"{name}.png",
            report.label_spans[report.label_spans["key"] == key],
            [(a.key, a.start, a.end) for a in report.alerts if a.key == key],
            title=f"{key}: {report.variant} ({report.model_version})",
        )
        plots[str(key)] = str(path)
    report = replace(report, plots=plots)
    (out_dir / REPORT_JSON).write_text(json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")
    return report


def evaluate_file(
    bundle_path: Path,
    data_path: Path,
    out_dir: Path,
    settings: Settings | None = None,
    top_k: int = 3,
) -> Report:
    """Evaluate a bundle on a labelled readings file and write the report to ``out_dir``."""
    settings = settings or load_settings()
    frame = read_table(data_path)
    required_labels(frame, str(data_path))  # fail before loading the model
    scorer = Scorer.load(bundle_path, settings)
    report = evaluate_frame(
        frame, scorer, settings.alerts, str(data_path), str(bundle_path), top_k, settings.windows.idle_ttl_s
    )
    return write_report(report, out_dir)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


TABLE_COLUMNS = (
    ("windows", 8),
    ("F1", 6),
    ("F1 PA", 6),
    ("FAR %", 7),
    ("MAR %", 7),
    ("ev.recall", 9),
    ("delay s", 8),
    ("ROC-AUC", 7),
    ("PR-AUC", 7),
    ("FA/day", 7),
)


def _table_row(name: str, m: dict[str, Any], width: int) -> str:
    p, pa, ev, rk = m["point"], m["point_adjusted"], m["event"], m["ranking"]
    cells = [
        str(m["windows"]),
        _fmt(p["f1"], ".3f"),
        _fmt(pa["f1"], ".3f"),
        _fmt(p["false_alarm_rate_pct"], ".2f"),
        _fmt(p["missed_alarm_rate_pct"], ".1f"),
        _fmt(ev["event_recall"], ".2f"),
        _fmt(ev["detection_delay_mean_s"], ".0f"),
        _fmt(rk["roc_auc"], ".3f"),
        _fmt(rk["pr_auc_average_precision"], ".3f"),
        _fmt(ev["false_alarm_events_per_day"], ".2f"),
    ]
    return name.ljust(width) + "".join(c.rjust(w + 2) for c, (_, w) in zip(cells, TABLE_COLUMNS))


def format_table(report: Report) -> str:
    """Per-series and pooled metrics as a fixed-width text table (PA: point-adjusted)."""
    width = max(len("pooled"), len("series"), *(len(k) for k in report.per_series))
    header = "series".ljust(width) + "".join(name.rjust(w + 2) for name, w in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    lines += [_table_row(key, m, width) for key, m in report.per_series.items()]
    lines += ["-" * len(header), _table_row("pooled", report.pooled, width)]
    return "\n".join(lines)
