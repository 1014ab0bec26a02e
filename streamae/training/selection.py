"""Choosing the detector without labels: ``streamae train`` when no variant is set.

The history is split by time exactly as :func:`~streamae.training.fit.fit` splits it
(``training.history``: 70 % train, 15 % validation, 15 % calibration). Every candidate — a
variant at a window length, and the score aggregations (``time_weighting``,
``feature_norm``, ``feature_pool``, ``reading_residual``) tried on it — is trained on the training windows
(early stopping on the validation windows), gets its per-feature error scale and its
threshold exactly as ``fit`` sets them (the user's rule, on the calibration windows), and
is then judged on a copy of the *validation* readings with synthetic faults injected
(:mod:`streamae.training.faults`, per key, several independent placements, a fixed seed).
A window is labelled faulty when its last reading lies inside a fault, as the daemon stamps
windows and as ``streamae evaluate`` labels them, and normal when all its readings are
normal. A window whose last reading is normal but which still holds readings of a fault that
just ended is neither, and is not judged: flagging it is not a false alarm about normal
operation (the alert policy keeps it in the fault's alert), and missing it is not a missed
fault. Counting those windows as normal would make the choice hinge on how long the
injected faults last compared with the window, rather than on how well each candidate
separates faulty readings from normal ones.

The metric is the point-wise **F1** of "score over the calibrated threshold" against those
labels, on the faulted validation stream: it rewards catching the faults and, because the
threshold is the real one, it charges every false alarm at the false-alarm rate the bundle
will actually have on normal readings. Ties (F1 equal to three decimals) go to the higher
average precision of the scores.

Candidates train with the configured epochs and early stopping, so the winner is not
retrained: its bundle is written as ``fit`` would write it (same split, so its threshold
stays honest: set on windows that neither the optimiser nor the search scored with faults;
no refit on train + validation), with every candidate, its settings and validation scores,
the metric, the fault kinds and seed in the manifest's ``selection`` record (``streamae
inspect`` prints it as a table).

No step reads a label of the history: the ``label`` column only removes windows touching
labelled rows, as in ``fit`` (they are left out of training, calibration and the faulted
validation stream alike).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from streamae.core.config import TrainSettings
from streamae.core.manifest import CandidateSettings, WindowScore
from streamae.core.progress_bar import Progress
from streamae.core.readings import DataError
from streamae.training.candidates import (
    MODEL_FIELDS,
    SCORE_FIELDS,
    ModelChoice,
    candidate_fields,
    candidate_settings,
    plan,
    scores_for_window,
)
from streamae.training.faulted_stream import FaultedStream, faulted_validation
from streamae.training.history import Prepared, prepare
from streamae.training.pipeline import (
    Calibrated,
    Trained,
    TrainResult,
    calibrate_trained,
    check_device,
    check_features,
    fit_variant,
    train_exported,
    write_trained,
)

log = logging.getLogger(__name__)

METRIC = "f1"
TIE_BREAK = "average_precision"


@dataclass(frozen=True)
class _Judged:
    """One candidate judged: its manifest entry and what writing its bundle takes."""

    entry: dict[str, Any]
    cfg: TrainSettings
    prep: Prepared
    trained: Trained
    calibrated: Calibrated

    @property
    def rank(self) -> tuple[float, float]:
        scores = self.entry["scores"]
        return (round(scores[METRIC], 3), scores[TIE_BREAK])


def judge(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Validation scores of one candidate: point-wise F1 (and its parts) at the threshold,
    and the average precision of the scores."""
    y = labels.astype(bool)
    flags = scores > threshold
    tp = int(np.sum(y & flags))
    fp = int(np.sum(~y & flags))
    fn = int(np.sum(y & ~flags))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    ap = float(average_precision_score(y, scores)) if y.any() and not y.all() else 0.0
    normal = int((~y).sum())
    return {
        "f1": f1,
        "average_precision": ap,
        "precision": precision,
        "recall": recall,
        "false_alarm_rate_pct": 100.0 * fp / normal if normal else 0.0,
    }


def select_and_fit(
    frame: pd.DataFrame,
    out_dir: Path | str,
    cfg: TrainSettings,
    source: str = "history",
    progress: bool = True,
    pinned: Sequence[str] | None = None,
) -> TrainResult:
    """Choose the detector for ``frame`` on injected faults (see the module docstring) and
    write its bundle, the search recorded in the manifest's ``selection``.

    ``pinned``: fields of ``cfg`` every candidate keeps (default: those ``cfg`` sets
    explicitly, its ``model_fields_set``). A ``cfg`` that names a variant is simply fitted.
    """
    if cfg.variant != "auto":
        return fit_variant(frame, out_dir, cfg, source, progress)
    check_device(cfg)
    out_dir = Path(out_dir)
    pinned = list(cfg.model_fields_set if pinned is None else pinned)
    search = plan(cfg, pinned)
    if not search.models:
        raise DataError(f"{source}: no candidate fits these settings (loss {cfg.loss}); pin --variant")
    preps = _prepare_windows(frame, cfg, {m.window for m in search.models}, source)
    models = [m for m in search.models if m.window in preps]
    ref = next(iter(preps.values()))
    check_features(cfg, ref.features, source)
    # the validation readings of every window length's split: after the last reading any
    # candidate trains on, up to where the first calibration window of any candidate starts
    after = max(float(p.hist.windows.end_ts[p.split.train].max()) for p in preps.values())
    until = min(p.split.calibration_after for p in preps.values())
    stream = faulted_validation(
        ref.hist.readings, ref.hist.normal_rows, ref.encoding, after, until, max(preps) - 1, cfg.seed
    )
    judged = _judge_all(models, preps, cfg, search.scores, stream, out_dir, source, pinned, progress)
    best = max(range(len(judged)), key=lambda i: judged[i].rank)  # the first of equals
    won = judged[best]
    log.info("selection: chose %s (F1 %.3f)", _name(won.entry), won.entry["scores"]["f1"])
    selection = {
        "search": cfg.search,
        "metric": METRIC,
        "tie_break": TIE_BREAK,
        "fault_kinds": list(stream.kinds),
        "seed": stream.seed,
        "replicas": stream.replicas,
        "faults": stream.faults,
        "windows": int(stream.judged.sum()),
        "labelled_windows": int(stream.labels[stream.judged].sum()),
        "pinned": sorted(p for p in pinned if p in (*SCORE_FIELDS, *MODEL_FIELDS)),
        "candidates": [j.entry for j in judged],
        "chosen": best,
    }
    return write_trained(won.prep, won.trained, won.calibrated, won.cfg, out_dir, source, selection)


def _prepare_windows(
    frame: pd.DataFrame, cfg: TrainSettings, windows: set[int], source: str
) -> dict[int, Prepared]:
    """The history prepared once per window length the search tries; lengths the history is
    too short for are left out (an error only when none is left)."""
    preps: dict[int, Prepared] = {}
    errors: list[str] = []
    for window in sorted(windows):
        try:
            preps[window] = prepare(
                frame, candidate_settings(cfg, ModelChoice("pca", window), WindowScore()), source
            )
        except DataError as exc:
            errors.append(str(exc))
    if not preps:
        raise DataError(errors[0])
    return preps


def _judge_all(
    models: Sequence[ModelChoice],
    preps: dict[int, Prepared],
    cfg: TrainSettings,
    scores: Sequence[WindowScore],
    stream: FaultedStream,
    out_dir: Path,
    source: str,
    pinned: Sequence[str],
    progress: bool,
) -> list[_Judged]:
    """Every candidate model, trained and judged on the faulted stream with every score."""
    judged: list[_Judged] = []
    bar = Progress(models, f"selecting ({cfg.search})", "model", progress)
    with _quiet("streamae.core.scoring"):  # a scorer per candidate: no providers line each
        for m in bar:
            bar.set_postfix_str(f"{m.variant} w{m.window}")
            found = judge_model(m, preps[m.window], cfg, scores, stream, out_dir, source, pinned)
            judged.extend(found)
            msg = f"{m.variant} w{m.window}: " + "; ".join(
                f"{_name(j.entry)} F1 {j.entry['scores']['f1']:.3f}" for j in found
            )
            if progress:
                bar.write(msg)
            else:
                log.info("selection: %s", msg)
    bar.close()
    return judged


def judge_model(
    m: ModelChoice,
    prep: Prepared,
    cfg: TrainSettings,
    score_choices: Sequence[WindowScore],
    stream: FaultedStream,
    out_dir: Path,
    source: str,
    pinned: Sequence[str] = (),
) -> list[_Judged]:
    """Train one model and judge each way of scoring it on the faulted validation stream,
    every one calibrated exactly as ``fit`` calibrates (``pinned``: the fields the user set)."""
    started = time.perf_counter()
    trained = train_exported(prep, candidate_settings(cfg, m, WindowScore()), progress=False)
    train_s = time.perf_counter() - started
    windows, labels = stream.windows(prep.encoding, m.window, cfg.stride)
    out = []
    for s in scores_for_window(score_choices, m.window, len(prep.features), pinned):
        c_cfg = candidate_settings(cfg, m, s)
        cal = calibrate_trained(prep, trained, c_cfg, out_dir, source)
        scorer = cal.scorer(out_dir, trained.model_bytes)
        _, final = scorer.stream(windows)  # as `streamae score` scores them
        scores = judge(labels, final, scorer.threshold)
        entry = _entry(m, s, scores, scorer.threshold, trained, train_s)
        out.append(_Judged(entry, c_cfg, prep, trained, cal))
    return out


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Log only warnings and worse from logger ``name`` for a while."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _entry(
    m: ModelChoice,
    s: WindowScore,
    scores: dict[str, float],
    threshold: float,
    trained: Trained,
    train_s: float,
) -> dict[str, Any]:
    return {
        "settings": candidate_fields(m, s),
        "scores": scores,
        "threshold": threshold,
        "epochs": len(trained.history),
        "train_seconds": round(train_s, 3),
    }


def _name(entry: dict[str, Any]) -> str:
    return CandidateSettings.model_validate(entry["settings"]).describe()
