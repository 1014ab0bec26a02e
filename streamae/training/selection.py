"""Choosing the detector without labels: ``streamae train`` when no variant is set.

The history is split by time exactly as :func:`~streamae.training.fit.fit` splits it
(``training.history``: 70 % train, 15 % validation, 15 % calibration). Every candidate — a
variant at a window length, and the score aggregations (``time_weighting``,
``feature_norm``, ``feature_pool``) tried on it — is trained on the training windows
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
from tqdm.auto import tqdm

from streamae.core.bundle import CandidateSettings
from streamae.core.config import TrainSettings
from streamae.core.offline import frame_windows, score_windows
from streamae.core.readings import DataError, Readings
from streamae.core.windows import Windows
from streamae.training import faults
from streamae.training.fit import (
    Calibrated,
    Prepared,
    Trained,
    TrainResult,
    calibrate_trained,
    check_device,
    fit,
    prepare,
    train_exported,
    write_trained,
)

log = logging.getLogger(__name__)

METRIC = "f1"
TIE_BREAK = "average_precision"
REPLICAS = 8  # independent fault placements of the validation readings
ROWS_PER_FAULT = 200  # faults per key and replica: validation readings / this (at least 1)
MIN_EVAL_ROWS = 20  # validation readings per copy (on average), at least, to judge a candidate
FEW_EVAL_ROWS = 200  # ...below this many, the choice is uncertain and a warning says so
MIN_MARGIN = 10  # normal readings between two faults (at least; else the longest window)
FAULT_SEED = 8  # mixed with the training seed: the faults are the same for every candidate
# the fields a candidate sets; a user who sets one of them (flag or variable) pins it
SCORE_FIELDS = ("time_weighting", "half_life", "feature_norm", "feature_pool")
MODEL_FIELDS = ("window", "code")


@dataclass(frozen=True)
class ModelChoice:
    """A model to train: a variant at a window length (``code``: size or PCA components)."""

    variant: str
    window: int
    code: int | None = None


@dataclass(frozen=True)
class ScoreChoice:
    """How the trained model's errors become a window score (the manifest's ``score``)."""

    time_weighting: str = "uniform"
    feature_norm: bool = False
    feature_pool: str = "mean"
    half_life: float | None = None


@dataclass(frozen=True)
class Search:
    models: tuple[ModelChoice, ...]
    scores: tuple[ScoreChoice, ...]


_PLAIN, _NORM = ScoreChoice(), ScoreChoice(feature_norm=True)
_RECENT, _RECENT_NORM = ScoreChoice("recent"), ScoreChoice("recent", True)
_NORM_MAX = ScoreChoice(feature_norm=True, feature_pool="max")
_RECENT_NORM_MAX = ScoreChoice("recent", True, "max")

#: The candidates of each search breadth. Window 1 is the per-reading model (a PCA of single
#: standardised readings); the windowed ones see time. Score aggregations cost no training:
#: each is another reading of the same trained model. Windows stay at 30 readings or fewer
#: but in ``wide``: the judgment does not count the windows a fault leaves behind, so longer
#: windows, whose scores linger longer after a fault, are an explicit choice.
SEARCHES: dict[str, Search] = {
    "quick": Search(
        (ModelChoice("pca", 1), ModelChoice("dense", 10), ModelChoice("conv", 10)),
        (_PLAIN, _NORM_MAX, _RECENT_NORM),
    ),
    "default": Search(
        (
            ModelChoice("pca", 1),
            ModelChoice("pca", 10),
            ModelChoice("pca", 30),
            ModelChoice("dense", 10),
            ModelChoice("dense", 30),
            ModelChoice("conv", 10),
            ModelChoice("conv", 30),
        ),
        (_PLAIN, _NORM, _NORM_MAX, _RECENT, _RECENT_NORM, _RECENT_NORM_MAX),
    ),
    "wide": Search(
        (
            ModelChoice("pca", 1),
            ModelChoice("pca", 10),
            ModelChoice("pca", 30),
            ModelChoice("dense", 10),
            ModelChoice("dense", 30),
            ModelChoice("dense", 60),
            ModelChoice("denoising", 30),
            ModelChoice("conv", 10),
            ModelChoice("conv", 30),
            ModelChoice("conv", 60),
            ModelChoice("lstm", 30),
        ),
        (_PLAIN, _NORM, _NORM_MAX, _RECENT, _RECENT_NORM, _RECENT_NORM_MAX),
    ),
}


def plan(cfg: TrainSettings, pinned: Sequence[str] = ()) -> Search:
    """The candidates for ``cfg.search``, with the ``pinned`` fields (those the user set)
    taken from ``cfg``: ``--window 30`` trains every variant at window 30 only."""
    search = SEARCHES[cfg.search]
    models: list[ModelChoice] = []
    for m in search.models:
        if cfg.loss == "bce" and m.variant == "pca":
            continue  # pca reconstructs linearly: no sigmoid output for BCE
        window = cfg.window if "window" in pinned else m.window
        code = cfg.code if "code" in pinned else m.code
        if code == 0 and m.variant != "pca":
            continue
        model = ModelChoice(m.variant, window, code)
        if model not in models:
            models.append(model)
    scores: list[ScoreChoice] = []
    for s in search.scores:
        score = ScoreChoice(
            cfg.time_weighting if "time_weighting" in pinned else s.time_weighting,
            cfg.feature_norm if "feature_norm" in pinned else s.feature_norm,
            cfg.feature_pool if "feature_pool" in pinned else s.feature_pool,
            cfg.half_life if "half_life" in pinned else s.half_life,
        )
        if score not in scores:
            scores.append(score)
    return Search(tuple(models), tuple(scores))


def _score_choices(scores: Sequence[ScoreChoice], window: int) -> list[ScoreChoice]:
    """Score choices that differ for this window length (one reading has no time weighting)."""
    out: list[ScoreChoice] = []
    for s in scores:
        if window == 1:
            s = ScoreChoice("uniform", s.feature_norm, s.feature_pool, None)
        if s not in out:
            out.append(s)
    return out


@dataclass(frozen=True)
class FaultedStream:
    """The validation readings of every key with injected faults, ``replicas`` times over
    (each copy its own key), each preceded by the clean readings before it so that every
    validation reading ends a complete window."""

    frame: pd.DataFrame  # timestamp, key ("<key>#<replica>"), features
    labels: np.ndarray  # per row: 1 inside an injected fault
    judged: np.ndarray  # per row: a validation reading (not context)
    clean: np.ndarray  # per row: the history row it copies is normal (no label > 0)
    faults: int
    kinds: tuple[str, ...]
    seed: int

    def windows(self, features: list[str], window: int, stride: int) -> tuple[Windows, np.ndarray]:
        """The judged windows and their labels (that of their last reading): those ending at
        validation readings, touching no labelled history row, and either inside a fault
        (last reading faulty) or wholly normal. A window whose fault ended before its last
        reading is neither, and is not judged (see the module docstring)."""
        w = frame_windows(self.frame, features, window, stride, "selection")
        dirty = np.concatenate([[0], np.cumsum(~self.clean)])
        faulty = np.concatenate([[0], np.cumsum(self.labels)])
        span = (w.first_offset, w.last_offset + 1)
        touched = dirty[span[1]] - dirty[span[0]] > 0
        label = self.labels[w.last_offset]
        after_fault = (label == 0) & (faulty[span[1]] - faulty[span[0]] > 0)
        w = w.select(self.judged[w.last_offset] & ~touched & ~after_fault)
        return w, self.labels[w.last_offset]


def faulted_validation(
    readings: Readings,
    normal_rows: np.ndarray,
    features: list[str],
    after: float,
    until: float,
    context: int,
    seed: int,
    kinds: Sequence[str] = faults.KINDS,
    replicas: int = REPLICAS,
) -> FaultedStream:
    """Readings with ``after < ts <= until`` of each key, ``replicas`` times, each with its
    own faults (:func:`faults.inject`; between two, ``context`` normal readings, at least
    :data:`MIN_MARGIN`);
    ``context`` clean readings of the key go before each copy."""
    frames, labels, judged, clean = [], [], [], []
    count = 0
    margin = max(context, MIN_MARGIN)
    keys = pd.unique(readings.keys)
    for k_index, key in enumerate(keys):
        rows = np.flatnonzero(readings.keys == key)
        rows = rows[np.argsort(readings.ts[rows], kind="stable")]
        in_span = (readings.ts[rows] > after) & (readings.ts[rows] <= until)
        span = rows[in_span]
        if not len(span):
            continue
        first = int(np.flatnonzero(in_span)[0])
        before = rows[max(0, first - context) : first]
        n_faults = max(1, len(span) // ROWS_PER_FAULT)
        # the kinds take turns across the copies (in an order of the key's own), so that every
        # kind is injected about equally often however few faults one copy holds
        turn = np.random.default_rng([FAULT_SEED, seed, k_index]).permutation(len(kinds))
        normal = _without_labelled(readings.values[span], normal_rows[span])
        for r in range(replicas):
            rng = np.random.default_rng([FAULT_SEED, seed, k_index, r])
            order = [kinds[turn[(r * n_faults + i) % len(kinds)]] for i in range(len(kinds))]
            values, lab, made = faults.inject(normal, rng, n_faults, order, margin=margin)
            count += len(made)
            block = np.concatenate([readings.values[before].astype(np.float64), values])
            frame = pd.DataFrame(block, columns=features)
            frame.insert(0, "timestamp", readings.ts[np.concatenate([before, span])])
            frame.insert(1, "key", f"{key}#{r}")
            frames.append(frame)
            labels.append(np.concatenate([np.zeros(len(before), np.int8), lab]))
            judged.append(np.concatenate([np.zeros(len(before), bool), np.ones(len(span), bool)]))
            clean.append(normal_rows[np.concatenate([before, span])])
    per_copy = sum(int(j.sum()) for j in judged) / replicas
    if per_copy < MIN_EVAL_ROWS:
        raise DataError(
            "too little validation history to choose a detector on injected faults; "
            "pin one with --variant (and --window)"
        )
    if per_copy < FEW_EVAL_ROWS:
        log.warning(
            "selection: only %d validation readings to inject faults into; the choice is uncertain "
            "(more history, or pin one with --variant)",
            per_copy,
        )
    return FaultedStream(
        pd.concat(frames, ignore_index=True),
        np.concatenate(labels),
        np.concatenate(judged),
        np.concatenate(clean),
        count,
        tuple(kinds),
        seed,
    )


def _without_labelled(values: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``values`` with the rows of labelled history replaced by the median of the others, so
    that no fault size, level or replayed stretch comes from them (the windows touching
    them are not judged anyway)."""
    out = values.astype(np.float64)
    if normal.any() and not normal.all():
        out[~normal] = np.median(out[normal], axis=0)
    return out


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
        return fit(frame, out_dir, cfg, source, progress)
    check_device(cfg)
    out_dir = Path(out_dir)
    pinned = list(cfg.model_fields_set if pinned is None else pinned)
    search = plan(cfg, pinned)
    if not search.models:
        raise DataError(f"{source}: no candidate fits these settings (loss {cfg.loss}); pin --variant")
    preps: dict[int, Prepared] = {}
    errors: list[str] = []
    for window in sorted({m.window for m in search.models}):
        try:
            preps[window] = prepare(frame, _settings(cfg, ModelChoice("pca", window), _PLAIN), source)
        except DataError as exc:
            errors.append(str(exc))
    if not preps:
        raise DataError(errors[0])
    models = [m for m in search.models if m.window in preps]
    ref = next(iter(preps.values()))
    # the validation readings of every window length's split: after the last reading any
    # candidate trains on, up to where the first calibration window of any candidate starts
    after = max(float(p.hist.windows.end_ts[p.split.train].max()) for p in preps.values())
    until = min(p.split.calibration_after for p in preps.values())
    stream = faulted_validation(
        ref.hist.readings, ref.hist.normal_rows, ref.features, after, until, max(preps) - 1, cfg.seed
    )
    judged: list[_Judged] = []
    bar = tqdm(models, desc=f"selecting ({cfg.search})", unit="model", disable=not progress)
    with _quiet("streamae.core.scoring"):  # a scorer per candidate: no providers line each
        for m in bar:
            bar.set_postfix_str(f"{m.variant} w{m.window}")
            found = judge_model(m, preps[m.window], cfg, search.scores, stream, out_dir, source)
            judged.extend(found)
            msg = f"{m.variant} w{m.window}: " + "; ".join(
                f"{_name(j.entry)} F1 {j.entry['scores']['f1']:.3f}" for j in found
            )
            if progress:
                tqdm.write(msg)
            else:
                log.info("selection: %s", msg)
    bar.close()
    best = max(range(len(judged)), key=lambda i: judged[i].rank)  # the first of equals
    won = judged[best]
    log.info("selection: chose %s (F1 %.3f)", _name(won.entry), won.entry["scores"]["f1"])
    selection = {
        "search": cfg.search,
        "metric": METRIC,
        "tie_break": TIE_BREAK,
        "fault_kinds": list(stream.kinds),
        "seed": stream.seed,
        "replicas": REPLICAS,
        "faults": stream.faults,
        "windows": int(stream.judged.sum()),
        "labelled_windows": int(stream.labels[stream.judged].sum()),
        "pinned": sorted(p for p in pinned if p in (*SCORE_FIELDS, *MODEL_FIELDS)),
        "candidates": [j.entry for j in judged],
        "chosen": best,
    }
    return write_trained(won.prep, won.trained, won.calibrated, won.cfg, out_dir, source, selection)


def judge_model(
    m: ModelChoice,
    prep: Prepared,
    cfg: TrainSettings,
    score_choices: Sequence[ScoreChoice],
    stream: FaultedStream,
    out_dir: Path,
    source: str,
) -> list[_Judged]:
    """Train one model and judge each way of scoring it on the faulted validation stream,
    every one calibrated exactly as ``fit`` calibrates."""
    started = time.perf_counter()
    trained = train_exported(prep, _settings(cfg, m, _PLAIN), progress=False)
    train_s = time.perf_counter() - started
    windows, labels = stream.windows(prep.features, m.window, cfg.stride)
    out = []
    for s in _score_choices(score_choices, m.window):
        c_cfg = _settings(cfg, m, s)
        cal = calibrate_trained(prep, trained, c_cfg, out_dir, source)
        scorer = cal.scorer(out_dir, trained.model_bytes)
        _, smoothed = score_windows(scorer, windows)
        final = scorer.finalise(windows, smoothed, None)
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


def _settings(cfg: TrainSettings, m: ModelChoice, s: ScoreChoice) -> TrainSettings:
    """The concrete settings of one candidate: ``cfg`` with the candidate's fields."""
    update = {
        "variant": m.variant,
        "window": m.window,
        "code": m.code,
        "time_weighting": s.time_weighting,
        "half_life": s.half_life,
        "feature_norm": s.feature_norm,
        "feature_pool": s.feature_pool,
    }
    return TrainSettings.model_validate({**cfg.model_dump(), **update})


def _entry(
    m: ModelChoice,
    s: ScoreChoice,
    scores: dict[str, float],
    threshold: float,
    trained: Trained,
    train_s: float,
) -> dict[str, Any]:
    return {
        "settings": {
            "variant": m.variant,
            "window": m.window,
            "code": m.code,
            "time_weighting": s.time_weighting,
            "half_life": s.half_life,
            "feature_norm": s.feature_norm,
            "feature_pool": s.feature_pool,
        },
        "scores": scores,
        "threshold": threshold,
        "epochs": len(trained.history),
        "train_seconds": round(train_s, 3),
    }


def _name(entry: dict[str, Any]) -> str:
    return CandidateSettings.model_validate(entry["settings"]).describe()
