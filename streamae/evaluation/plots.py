"""Pictures: score over time per key (threshold, labelled anomalies, alerts), training
curves, score histograms and 2-D views of the latent space."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def label_spans(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs of consecutive ``label > 0`` rows per key as ``key``, ``start``, ``end`` (epoch s)."""
    f = frame.assign(key=frame.get("key", "default")).sort_values(["key", "timestamp"], kind="stable")
    hot = f["label"] > 0
    run = (hot.ne(hot.shift()) | f["key"].ne(f["key"].shift())).cumsum()
    runs = f[hot].groupby(run[hot])
    return pd.DataFrame(
        {"key": runs["key"].first(), "start": runs["timestamp"].min(), "end": runs["timestamp"].max()}
    ).reset_index(drop=True)


def plot_scores(
    scores: pd.DataFrame,
    path: Path,
    labels: pd.DataFrame | None = None,
    alerts: Sequence[tuple[str, float, float]] = (),
    title: str = "anomaly score",
) -> Path:
    """One panel per key: score (log scale) vs time, threshold, labelled spans, alert spans.

    ``scores`` has ``key``, ``window_end``, ``score``, ``threshold``; ``labels`` has ``key``,
    ``start``, ``end`` (epoch s); ``alerts`` are ``(key, start, end)``.
    """
    keys = sorted(scores["key"].unique())
    fig, axes = plt.subplots(len(keys), 1, figsize=(12, 2.2 * len(keys) + 0.8), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        s = scores[scores["key"] == key]
        t = pd.to_datetime(s["window_end"], unit="s")
        ax.plot(t, s["score"], lw=0.8, color="tab:blue", label="score")
        ax.plot(t, s["threshold"], lw=1, ls="--", color="tab:red", label="threshold")
        if labels is not None:
            for row in labels[labels["key"] == key].itertuples():
                start, end = pd.to_datetime(row.start, unit="s"), pd.to_datetime(row.end, unit="s")
                if end > start:
                    ax.axvspan(start, end, color="orange", alpha=0.3, lw=0)
                else:  # a point anomaly (one transaction) has no width to shade
                    ax.axvline(start, color="orange", alpha=0.8, lw=1.5)
        for k, start, end in alerts:
            if k == key:
                ax.axvspan(
                    pd.to_datetime(start, unit="s"),
                    pd.to_datetime(end, unit="s"),
                    ymin=0.9,
                    ymax=1.0,
                    color="crimson",
                    alpha=0.8,
                    lw=0,
                )
        ax.set_yscale("log")
        ax.set_ylabel(key, fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[0, 0].set_title(f"{title}  (orange: injected/labelled anomaly, red bar: alert)")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training(history: Sequence[dict[str, float]], path: Path, title: str = "training") -> Path:
    """Training and validation loss per epoch (log scale)."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["train_loss"] for h in history], marker=".", label="training objective")
    ax.plot(epochs, [h["val_loss"] for h in history], marker=".", label="validation reconstruction MSE")
    best = min(history, key=lambda h: h["val_loss"])
    ax.axvline(best["epoch"], color="grey", ls=":", lw=1, label=f"kept (epoch {best['epoch']})")
    if all(h["train_loss"] > 0 and h["val_loss"] > 0 for h in history):  # a perfect fit has 0 loss
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_score_histogram(
    normal: np.ndarray,
    threshold: float,
    path: Path,
    anomalous: np.ndarray | None = None,
    title: str = "window scores",
) -> Path:
    """Histogram of window scores on log-spaced bins, threshold as a vertical line.

    ``normal`` are the scores of normal (or all, when unlabelled) windows; ``anomalous``
    those of labelled-anomalous windows, drawn in another colour when given.
    """
    parts = [np.asarray(normal, dtype=np.float64)]
    if anomalous is not None:
        parts.append(np.asarray(anomalous, dtype=np.float64))
    every = np.concatenate([*parts, [threshold]])
    positive = every[every > 0]
    # log-spaced bins need a positive floor; an exact 0 score is put in the lowest bin
    lo = float(positive.min()) if len(positive) else 1e-12
    hi = max(float(every.max()), lo * 10)
    bins = np.geomspace(lo, hi, 60).tolist()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(
        np.clip(parts[0], lo, hi), bins=bins, color="tab:blue", alpha=0.7, label=f"normal ({len(parts[0])})"
    )
    if anomalous is not None and len(parts[1]):
        ax.hist(
            np.clip(parts[1], lo, hi),
            bins=bins,
            color="tab:orange",
            alpha=0.7,
            label=f"labelled anomalous ({len(parts[1])})",
        )
    ax.axvline(threshold, color="tab:red", ls="--", lw=1.2, label=f"threshold {threshold:.4g}")
    ax.set_xscale("log")
    ax.set_xlabel("window score (log scale)")
    ax.set_ylabel("windows")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_latent(
    points: np.ndarray,
    flagged: np.ndarray,
    path: Path,
    labelled: np.ndarray | None = None,
    xlabel: str = "code[0]",
    ylabel: str = "code[1]",
    title: str = "latent space",
) -> Path:
    """Windows as points in 2-D (a code, or a projection of it): normal vs flagged (score over
    threshold); labelled-anomalous windows ringed when ``labelled`` is given."""
    pts = np.asarray(points, dtype=np.float64)
    hot = np.asarray(flagged, dtype=bool)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(
        pts[~hot, 0],
        pts[~hot, 1],
        s=4,
        color="tab:blue",
        alpha=0.4,
        lw=0,
        label=f"normal ({int((~hot).sum())})",
    )
    ax.scatter(
        pts[hot, 0], pts[hot, 1], s=8, color="tab:red", alpha=0.8, lw=0, label=f"flagged ({int(hot.sum())})"
    )
    if labelled is not None:
        lab = np.asarray(labelled, dtype=bool)
        ax.scatter(
            pts[lab, 0],
            pts[lab, 1],
            s=30,
            facecolors="none",
            edgecolors="tab:orange",
            lw=0.8,
            label=f"labelled anomalous ({int(lab.sum())})",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, markerscale=2)
    return _save(fig, path)
