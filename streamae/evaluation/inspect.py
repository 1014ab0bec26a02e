"""Bundle inspection (``streamae inspect``): the manifest in words, the training curve and,
with data, the score histogram against the threshold and a 2-D view of the latent codes.

Data windows are cut and scored by the pipeline of ``streamae score``
(``core.offline``), so the histogram shows the scores the threshold is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamae.core.bundle import load_bundle
from streamae.core.config import Settings, load_settings
from streamae.core.manifest import Manifest, Selection
from streamae.core.offline import frame_windows
from streamae.core.readings import read_table
from streamae.core.scoring import Scorer
from streamae.evaluation.plots import plot_latent, plot_score_histogram, plot_training
from streamae.evaluation.report import row_labels

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
        *(f"field        {f.describe()}" for f in m.fields if f.kind == "ignored" or f.reason),
        f"windows      {m.window} readings, stride {m.stride}",
        "scaler       "
        + ", ".join(
            f"{f}: {mu:.4g} ± {s:.4g}" for f, mu, s in zip(m.features, m.scaler.mean, m.scaler.scale)
        ),
        f"score        {_score(m)}",
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
    if m.selection is not None:
        lines.append(describe_selection(m.selection))
    return "\n".join(lines)


def _score(m: Manifest) -> str:
    """How a window's errors become its score, in words."""
    s = m.score
    half_life = "" if s.half_life is None else f" (half-life {s.half_life:g})"
    norm = "each feature's over its normal mean, " if s.feature_norm else ""
    parts = [f"errors over time {s.time_weighting}{half_life}", f"{norm}{s.feature_pool} across features"]
    if s.reading_residual:
        axes = len(s.residual_components[0])
        parts.append(f"plus the newest reading's residual off {axes} of {len(m.features)} principal axes")
    return "; ".join(parts)


def describe_selection(sel: Selection) -> str:
    """How the detector was chosen: the search in words, then every candidate, best first,
    the chosen one marked with ``*``."""
    head = (
        f"selection    {sel.search} search, {len(sel.candidates)} candidates, by {sel.metric.upper()} at "
        f"each one's calibrated threshold (ties: {sel.tie_break.replace('_', ' ')}), on "
        f"{sel.faults} injected faults in {sel.replicas} copies of the validation readings "
        f"({sel.windows} readings, {sel.labelled_windows} inside a fault; seed {sel.seed}; "
        f"kinds {', '.join(sel.fault_kinds)})" + (f"; pinned: {', '.join(sel.pinned)}" if sel.pinned else "")
    )
    names = [c.settings.describe() for c in sel.candidates]
    width = max(len("candidate"), *(len(n) for n in names))
    rows = [
        f"     {'candidate':<{width}}  {'F1':>5}  {'AP':>5}  precision  recall  FAR %  "
        f"{'threshold':>10}  epochs  train s"
    ]
    order = sorted(
        range(len(sel.candidates)),
        key=lambda i: (-round(sel.candidates[i].scores.f1, 3), -sel.candidates[i].scores.average_precision),
    )
    for i in order:
        c, s = sel.candidates[i], sel.candidates[i].scores
        mark = "*" if i == sel.chosen else " "
        rows.append(
            f"   {mark} {names[i]:<{width}}  {s.f1:5.3f}  {s.average_precision:5.3f}  {s.precision:9.3f}  "
            f"{s.recall:6.3f}  {s.false_alarm_rate_pct:5.2f}  {c.threshold:10.4g}  {c.epochs:6d}  "
            f"{c.train_seconds:7.1f}"
        )
    return "\n".join([head, *rows])


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
    m = load_bundle(bundle_path).manifest
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
    else:
        scorer = Scorer.load(bundle_path, settings or load_settings())
        _data_plots(scorer, data_path, out, plots, notes)
    return Inspection(str(bundle_path), describe_manifest(m, bundle_path), plots, notes)


def _data_plots(scorer: Scorer, data_path: Path, out: Path, plots: dict[str, Path], notes: list[str]) -> None:
    """Add the score histogram and latent view of ``data_path``'s windows to ``plots``."""
    m = scorer.manifest
    frame = read_table(data_path)
    source, name = str(data_path), Path(data_path).name
    labels = row_labels(frame, source)
    windows = frame_windows(frame, m.encoding(), m.window, m.stride, source)
    if len(windows) < 2:
        notes.append(f"{source}: {len(windows)} complete window(s) of {m.window}; need 2 for the data plots")
        return
    _, scores = scorer.stream(windows)  # what serve and score compare with the threshold
    labelled = None if labels is None else labels[windows.last_offset].astype(bool)
    flagged = scores > m.threshold.value
    plots["score histogram"] = plot_score_histogram(
        scores if labelled is None else scores[~labelled],
        m.threshold.value,
        out / SCORE_HISTOGRAM,
        None if labelled is None else scores[labelled],
        title=f"{m.variant}: window scores on {name}"
        + ("" if labelled is not None else " (unlabelled: all windows)"),
    )
    points, xlabel, ylabel = latent_points(scorer.encode(windows.data), scores)
    plots["latent view"] = plot_latent(
        points, flagged, out / LATENT, labelled, xlabel, ylabel, title=f"{m.variant}: latent codes of {name}"
    )
    notes.append(
        f"{source}: {len(windows)} windows, {int(flagged.sum())} over threshold"
        + ("" if labelled is None else f", {int(labelled.sum())} labelled anomalous")
    )
