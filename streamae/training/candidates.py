"""The candidates of label-free selection: models, score aggregations, and the searches.

A candidate is a :class:`ModelChoice` (a variant at a window length) scored one
:class:`~streamae.core.manifest.WindowScore` way; :data:`SEARCHES` holds each search breadth's candidates,
:func:`plan` narrows one to the fields the user pinned, and :func:`candidate_settings`
gives a candidate's concrete training settings. How they are judged: ``selection``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamae.core.config import TrainSettings
from streamae.core.manifest import WindowScore

# the fields a candidate sets; a user who sets one of them (flag or variable) pins it
SCORE_FIELDS = tuple(WindowScore.model_fields)
MODEL_FIELDS = ("window", "code")


@dataclass(frozen=True)
class ModelChoice:
    """A model to train: a variant at a window length (``code``: size or PCA components)."""

    variant: str
    window: int
    code: int | None = None


@dataclass(frozen=True)
class Search:
    models: tuple[ModelChoice, ...]
    scores: tuple[WindowScore, ...]


_PLAIN, _NORM = WindowScore(), WindowScore(feature_norm=True)
_RECENT = WindowScore(time_weighting="recent")
_RECENT_NORM = WindowScore(time_weighting="recent", feature_norm=True)
_NORM_MAX = WindowScore(feature_norm=True, feature_pool="max")
_RECENT_NORM_MAX = WindowScore(time_weighting="recent", feature_norm=True, feature_pool="max")
_NORM_RESID = WindowScore(feature_norm=True, reading_residual=True)
_RECENT_NORM_RESID = WindowScore(time_weighting="recent", feature_norm=True, reading_residual=True)

#: The candidates of each search breadth. Window 1 is the per-reading model (a PCA of single
#: standardised readings); the windowed ones see time, and may add that per-reading view's
#: residual (``reading_residual``) beside their window error. Score aggregations cost no
#: training: each is another reading of the same trained model. Windows stay at 30 readings or fewer
#: but in ``wide``: the judgment does not count the windows a fault leaves behind, so longer
#: windows, whose scores linger longer after a fault, are an explicit choice.
SEARCHES: dict[str, Search] = {
    "quick": Search(
        (ModelChoice("pca", 1), ModelChoice("dense", 10), ModelChoice("conv", 10)),
        (_PLAIN, _NORM_MAX, _RECENT_NORM, _RECENT_NORM_RESID),
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
        (_PLAIN, _NORM, _NORM_MAX, _RECENT, _RECENT_NORM, _RECENT_NORM_MAX, _NORM_RESID, _RECENT_NORM_RESID),
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
        (_PLAIN, _NORM, _NORM_MAX, _RECENT, _RECENT_NORM, _RECENT_NORM_MAX, _NORM_RESID, _RECENT_NORM_RESID),
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
    scores: list[WindowScore] = []
    for s in search.scores:
        score = s.model_copy(update={f: getattr(cfg, f) for f in SCORE_FIELDS if f in pinned})
        if score not in scores:
            scores.append(score)
    return Search(tuple(models), tuple(scores))


def scores_for_window(
    scores: Sequence[WindowScore], window: int, n_features: int, pinned: Sequence[str] = ()
) -> list[WindowScore]:
    """Score choices that differ for this window length and can be computed for this many
    features: one reading has no time weighting, and its own cross-sensor residual is what a
    per-reading PCA already scores (kept when the user ``pinned`` it); a single feature has
    no residual across sensors."""
    out: list[WindowScore] = []
    for s in scores:
        if window == 1:
            s = s.model_copy(update={"time_weighting": "uniform", "half_life": None})
            if "reading_residual" not in pinned:
                s = s.model_copy(update={"reading_residual": False})
        if n_features < 2:
            s = s.model_copy(update={"reading_residual": False})
        if s not in out:
            out.append(s)
    return out


def candidate_fields(m: ModelChoice, s: WindowScore) -> dict[str, Any]:
    """The settings fields one candidate sets (its manifest entry's ``settings``)."""
    return {"variant": m.variant, "window": m.window, "code": m.code, **s.model_dump()}


def candidate_settings(cfg: TrainSettings, m: ModelChoice, s: WindowScore) -> TrainSettings:
    """The concrete settings of one candidate: ``cfg`` with the candidate's fields."""
    return TrainSettings.model_validate({**cfg.model_dump(), **candidate_fields(m, s)})
