"""Evaluation reports and bundle inspection (``streamae evaluate``, ``streamae inspect``).

Evaluation scores a labelled readings file exactly as ``streamae score`` does, gives each
window the label of its last reading (the reading the daemon would alert on), runs the
configured alert policy over the scores, and measures point, point-adjusted, event and
ranking quality per series (key) and pooled over all series.
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
from streamae.core.bundle import Manifest, load_bundle
from streamae.core.config import AlertSettings, Settings, load_settings
from streamae.core.offline import score_frame
from streamae.core.readings import DataError, frame_to_readings, read_table
from streamae.core.scoring import Scorer
from streamae.core.windows import Windows, WindowStore
from streamae.evaluation.metrics import evaluate
from streamae.evaluation.plots import (
    label_spans,
    plot_latent,
    plot_score_histogram,
    plot_scores,
    plot_training,
)

REPORT_JSON = "report.json"
#: Ranking metrics judge the model's own error, before any EWMA smoothing of the detector.
RANKING_SCORE = "raw_score"

# evaluation.evaluate's short keys, spelled out for a report read without the code at hand
_RENAME: dict[str, dict[str, str]] = {
    "point": {
        "tp": "true_positive_windows",
        "fp": "false_positive_windows",
        "fn": "false_negative_windows",
        "tn": "true_negative_windows",
        "precision": "precision",
        "recall": "recall",
        "f1": "f1",
        "far": "false_alarm_rate_pct",
        "mar": "missed_alarm_rate_pct",
    },
    "event": {
        "events": "labelled_events",
        "detected": "detected_events",
        "event_recall": "event_recall",
        "delay_mean_s": "detection_delay_mean_s",
        "delay_median_s": "detection_delay_median_s",
        "false_alarm_events": "false_alarm_events",
        "span_days": "span_days",
        "false_alarms_per_day": "false_alarm_events_per_day",
    },
    "ranking": {"roc_auc": "roc_auc", "pr_auc": "pr_auc_average_precision"},
}
_RENAME["point_adjusted"] = _RENAME["point"]

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


def _labels(frame: pd.DataFrame, source: str, required: bool) -> np.ndarray | None:
    """The ``label`` column as 0/1 per row (>0 is anomalous), or None when absent and optional."""
    if "label" not in frame.columns:
        if required:
            raise DataError(
                f"{source}: no 'label' column (0 normal, >0 anomalous) to evaluate against "
                f"(columns: {list(frame.columns)})"
            )
        return None
    col = frame["label"]
    if not pd.api.types.is_numeric_dtype(col) or col.isna().any():
        bad = col.isna() | pd.to_numeric(col, errors="coerce").isna()
        row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        raise DataError(
            f"{source}: column 'label' must be numbers (0 normal, >0 anomalous); row {row} is not"
        )
    return (col.to_numpy() > 0).astype(np.int8)


def _named(metrics: dict[str, Any]) -> dict[str, Any]:
    """evaluation.evaluate's dict with self-explaining metric names."""
    out: dict[str, Any] = {"windows": metrics["rows"]}
    for section, names in _RENAME.items():
        out[section] = {names[k]: v for k, v in metrics[section].items()}
    return out


def _alert_spans(scores: pd.DataFrame, cfg: AlertSettings) -> tuple[int, list[AlertSpan]]:
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
) -> Report:
    """Score a labelled readings frame and measure detection quality per key and pooled."""
    labels = _labels(frame, source, required=True)
    assert labels is not None
    m = scorer.manifest
    scores = score_frame(frame, scorer, source, top_k)
    if scores.empty:
        raise DataError(f"{source}: no key has a complete window of {m.window} readings to score")
    # offsets are row numbers of the frame: the window's last reading is its row
    scores["label"] = labels[scores["source_offset_end"].to_numpy()]
    opened, spans = _alert_spans(scores, alerts)

    # stable sort keeps each key's file (time) order; series then lie in contiguous blocks
    ordered = scores.sort_values("key", kind="stable")
    arrays = {
        "labels": ordered["label"].to_numpy(),
        "flags": ordered["is_anomaly"].to_numpy(dtype=bool),
        "scores": ordered[RANKING_SCORE].to_numpy(dtype=np.float64),
        "timestamps": ordered["window_end"].to_numpy(dtype=np.float64),
    }
    keys = ordered["key"].to_numpy(dtype=object)
    pooled = _named(evaluate(**arrays, series=keys))
    uniq, first = np.unique(keys, return_index=True)
    bounds = np.append(first, len(keys))
    per_series = {
        str(key): _named(evaluate(**{k: a[lo:hi] for k, a in arrays.items()}))
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
    _labels(frame, str(data_path), required=True)  # fail before loading the model
    scorer = Scorer.load(bundle_path, settings)
    report = evaluate_frame(frame, scorer, settings.alerts, str(data_path), str(bundle_path), top_k)
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


# ---------------------------------------------------------------------------- inspect

TRAINING_CURVE = "training_curve.png"
SCORE_HISTOGRAM = "score_histogram.png"
LATENT = "latent.png"


@dataclass(frozen=True)
class Inspection:
    """What ``streamae inspect`` found: the manifest in words, the plots written, and notes."""

    bundle: str
    text: str
    plots: dict[str, Path]
    notes: list[str]


def _params(params: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in params.items()) or "-"


def describe_manifest(m: Manifest, path: Path | str = "") -> str:
    """The manifest of a bundle as readable text."""
    t = m.threshold
    training = m.training
    windows = training.get("windows", {})
    history = training.get("history") or []
    smoothing = "off" if t.ewma_alpha >= 1 else f"EWMA alpha {t.ewma_alpha:g} per key"
    lines = [
        f"bundle       {path}",
        f"model        {m.model_version} (format {m.format_version}, "
        f"created {m.created_at:%Y-%m-%d %H:%M:%S %Z})",
        f"variant      {m.variant}, loss {m.loss}, code size {m.code_size}",
        f"features     {len(m.features)}: {', '.join(m.features)}",
        f"windows      {m.window} readings, stride {m.stride}",
        "scaler       "
        + ", ".join(
            f"{f}: {mu:.4g} ± {s:.4g}" for f, mu, s in zip(m.features, m.scaler.mean, m.scaler.scale)
        ),
        f"threshold    {t.value:.6g} by {t.method} ({_params(t.params)}), smoothing {smoothing}",
        f"calibration  {t.calibration_windows} held-out normal windows",
        "metrics      " + (", ".join(f"{k}={v:.4g}" for k, v in m.metrics.items()) or "-"),
        "training     "
        + (", ".join(f"{k} {v}" for k, v in windows.items()) + " windows" if windows else "windows -")
        + f", {len(history)} epochs"
        + (f", from {training['source']}" if "source" in training else "")
        + (f" ({training['readings']} readings)" if "readings" in training else ""),
        "versions     " + (", ".join(f"{k} {v}" for k, v in m.versions.items()) or "-"),
        "extras       " + (", ".join(f"{k} ({v[:19]}…)" for k, v in m.extras.items()) or "-"),
    ]
    return "\n".join(lines)


def _score_windows(frame: pd.DataFrame, scorer: Scorer, source: str) -> tuple[Windows, np.ndarray]:
    """Windows of ``frame`` as ``score_frame`` cuts them, and their thresholded scores."""
    m = scorer.manifest
    readings = frame_to_readings(frame, m.features, source)
    windows = WindowStore(m.window, m.stride, len(m.features)).push(readings)
    raw = scorer.score(windows.data).scores
    return windows, scorer.smooth(windows.keys, raw, {})


def latent_points(codes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, str, str]:
    """2-D points for a latent picture and their axis labels: the code itself when it has two
    dimensions, its PCA(2) projection when it has more, code vs log score when it has one."""
    size = codes.shape[1]
    if size == 2:
        return codes, "code[0]", "code[1]"
    if size == 1:
        return (
            np.column_stack([codes[:, 0], np.log10(np.maximum(scores, 1e-300))]),
            "code[0]",
            "log10 window score",
        )
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(codes)
    share = pca.explained_variance_ratio_
    return (
        pca.transform(codes),
        f"PCA 1 of the {size}-d code ({share[0]:.0%} of its variance)",
        f"PCA 2 of the {size}-d code ({share[1]:.0%} of its variance)",
    )


def inspect_bundle(
    bundle_path: Path,
    data_path: Path | None = None,
    out_dir: Path | None = None,
    settings: Settings | None = None,
) -> Inspection:
    """Describe a bundle and draw its training curve; with data, also its score histogram
    and a 2-D view of the data's latent codes. Plots go to ``out_dir`` (default BUNDLE/inspect)."""
    bundle = load_bundle(bundle_path)
    m = bundle.manifest
    out = Path(out_dir) if out_dir is not None else Path(bundle_path) / "inspect"
    plots: dict[str, Path] = {}
    notes: list[str] = []
    history = m.training.get("history") or []
    if history:
        plots["training curve"] = plot_training(history, out / TRAINING_CURVE, f"{m.variant}: training")
    else:
        notes.append("the manifest holds no training history: no training curve")
    if data_path is None:
        notes.append("the score histogram and the latent view need data: pass DATA (a readings file)")
        return Inspection(str(bundle_path), describe_manifest(m, bundle_path), plots, notes)

    settings = settings or load_settings()
    scorer = Scorer.load(bundle_path, settings)
    frame = read_table(data_path)
    source = str(data_path)
    row_labels = _labels(frame, source, required=False)
    windows, scores = _score_windows(frame, scorer, source)
    if len(windows) < 2:
        notes.append(f"{source}: {len(windows)} complete window(s) of {m.window}; need 2 for the data plots")
        return Inspection(str(bundle_path), describe_manifest(m, bundle_path), plots, notes)
    labelled = None if row_labels is None else row_labels[windows.last_offset].astype(bool)
    normal = scores if labelled is None else scores[~labelled]
    plots["score histogram"] = plot_score_histogram(
        normal,
        m.threshold.value,
        out / SCORE_HISTOGRAM,
        None if labelled is None else scores[labelled],
        title=f"{m.variant}: window scores on {Path(source).name}"
        + ("" if labelled is not None else " (unlabelled: all windows)"),
    )
    points, xlabel, ylabel = latent_points(scorer.encode(windows.data), scores)
    plots["latent view"] = plot_latent(
        points,
        scores > m.threshold.value,
        out / LATENT,
        labelled,
        xlabel,
        ylabel,
        title=f"{m.variant}: latent codes of {Path(source).name}",
    )
    notes.append(
        f"{source}: {len(windows)} windows, {int((scores > m.threshold.value).sum())} over threshold"
        + ("" if labelled is None else f", {int(labelled.sum())} labelled anomalous")
    )
    return Inspection(str(bundle_path), describe_manifest(m, bundle_path), plots, notes)
