"""The schema of a bundle's ``manifest.json``: the model, its scaling, threshold and score,
post-processing, streaming normalisation and the selection that chose it. Strict: unknown
fields, non-finite numbers and inconsistent lengths are refused, naming the field."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from streamae.core.encoding import Context, Encoding
from streamae.core.fields import InputField
from streamae.core.renamed import POST_RENAMED, accept_old_names

FORMAT_VERSION: Final = 2  # 2: threshold calibration record, code output, extras


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Scaler(_Strict):
    """Standardisation applied before the model: ``(x - mean) / scale`` per feature."""

    mean: list[float]
    scale: list[float]

    @model_validator(mode="after")
    def _positive(self) -> Scaler:
        if len(self.mean) != len(self.scale):
            raise ValueError("mean and scale differ in length")
        if any(not s > 0 for s in self.scale):
            raise ValueError("every scale must be > 0")
        return self


ThresholdMethod = Literal["quantile", "sigma", "pot"]


class Smoothing(_Strict):
    """Per-key smoothing of window scores before they meet the threshold, defined here once for
    the manifest's ``threshold`` and the ``train`` settings."""

    ewma_alpha: float = Field(
        1.0,
        gt=0,
        le=1,
        description="smooth scores per key with this EWMA weight before the threshold (1: off)",
    )


class Threshold(Smoothing):
    """The alert threshold and how it was calibrated on held-out normal windows."""

    value: float = Field(gt=0)
    method: ThresholdMethod = "quantile"
    params: dict[str, float] = Field(
        default_factory=dict, description="what set it: quantile, k, target_far, fitted tail..."
    )
    calibration_windows: int = Field(ge=1, description="held-out normal windows it was set on")


class WindowScore(_Strict):
    """How a window's reconstruction errors become its score (see ``core/window_score.py``):
    the choices, defined here once for the manifest's ``score``, the ``train`` settings and
    the candidates of label-free selection."""

    time_weighting: Literal["uniform", "recent"] = Field(
        "uniform",
        description="window score: errors weighted evenly, or halving every half_life readings back "
        "from the newest",
    )
    half_life: float | None = Field(
        None, gt=0, description="recent weighting: readings; None: a quarter of the window"
    )
    feature_norm: bool = Field(
        False, description="window score: each feature's error over its held-out normal mean before pooling"
    )
    feature_pool: Literal["mean", "max"] = Field("mean", description="window score across features")
    reading_residual: bool = Field(
        False,
        description="window score: add each feature's cross-sensor residual in the newest reading "
        "(a PCA of single training readings, weighted to the same normal size; needs 2 or more features)",
    )


class ScoreSpec(WindowScore):
    """The manifest's ``score``: the choices, and what training fitted for the residual."""

    residual_center: list[float] = Field(
        default_factory=list, description="per feature: mean training reading, model input units"
    )
    residual_components: list[list[float]] = Field(
        default_factory=list, description="(F, k) principal axes of single training readings, 1 <= k < F"
    )
    residual_weight: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=list, description="per feature: window error over residual, held-out normal means"
    )

    @model_validator(mode="after")
    def _residual_complete(self) -> ScoreSpec:
        given = [f for f in _RESIDUAL_FIELDS if getattr(self, f)]
        if not self.reading_residual:
            if given:
                raise ValueError(f"{', '.join(given)} given, but reading_residual is false")
            return self
        missing = [f for f in _RESIDUAL_FIELDS if not getattr(self, f)]
        if missing:
            raise ValueError(f"reading_residual needs {', '.join(missing)}")
        widths = sorted({len(row) for row in self.residual_components})
        if widths[0] < 1 or len(widths) > 1:
            raise ValueError(f"residual_components rows must have one width k >= 1, found widths {widths}")
        return self

    @model_serializer(mode="wrap")
    def _residual_only_when_on(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a bundle without the residual stays readable by a daemon that predates it
        data: dict[str, Any] = handler(self)
        if not self.reading_residual:
            for name in ("reading_residual", *_RESIDUAL_FIELDS):
                data.pop(name, None)
        return data


_RESIDUAL_FIELDS = ("residual_center", "residual_components", "residual_weight")


class PostProcessing(_Strict):
    """Which streaming post-processing stages run on window scores per key (see
    ``core/postprocess.py``): the choices, defined here once for the manifest's ``postprocess``
    and the ``train`` settings."""

    #: old names still accepted (a bundle, ``STREAMAE_TRAIN__SPARSE``, ``--quiet-windows``), warned
    renamed: ClassVar[dict[str, str]] = POST_RENAMED

    likelihood: bool = Field(False, description="post-processing: HTM-style anomaly likelihood of the scores")
    record_high: bool = Field(
        False, description="post-processing: report a window only when it breaks its key's record"
    )
    record_half_life: float = Field(1000.0, gt=0, description="record_high: windows for the record to halve")
    range_widen: float | None = Field(
        None,
        ge=0,
        description="post-processing: flag readings outside the key's running range widened by this "
        "(HTM: 0.05); None: off",
    )
    suppress_windows: int = Field(
        0, ge=0, description="post-processing: windows of a key not flagged after a flag"
    )

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return accept_old_names(data, POST_RENAMED, cls.__name__)


class PostSpec(PostProcessing):
    """The manifest's ``postprocess``: the stages, their constants and the training range."""

    likelihood_alpha: float = Field(0.001, gt=0, le=1, description="long-run EWMA weight")
    likelihood_short_alpha: float = Field(0.1, gt=0, le=1, description="recent EWMA weight")
    likelihood_far: float = Field(1e-3, gt=0, lt=1, description="flag when likelihood > 1 - this")
    record_margin: float = Field(0.1, ge=0, description="how far above the record a window must be")
    range_lo: list[float] = Field(default_factory=list, description="per feature, from training")
    range_hi: list[float] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _renamed_only_when_on(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a bundle that leaves these stages off stays readable by a daemon that predates the
        # new names (its strict manifest would refuse them)
        data: dict[str, Any] = handler(self)
        for name in POST_RENAMED.values():
            if not data.get(name):
                data.pop(name, None)
        return data


class Adaptation(_Strict):
    """Streaming normalisation of each key's readings (see ``core/adapt.py``), off unless
    ``half_life`` is set: the choices, defined here once for the manifest's ``adapt`` and the
    ``train`` settings' ``adapt`` section."""

    half_life: float | None = Field(
        None,
        gt=0,
        description="windows of a key (stride 1: readings) for its running mean and variance "
        "(learned from windows not flagged) to halve; None: off",
    )
    block: int = Field(32, ge=1, description="windows of a key scored with one set of statistics")
    rescale: bool = Field(True, description="re-scale as well as re-centre")


class AdaptSpec(Adaptation):
    """The manifest's ``adapt``: the choices and the training readings' statistics."""

    ref_mean: list[float] = Field(default_factory=list, description="per feature, training readings")
    ref_std: list[float] = Field(default_factory=list, description="per feature, training readings")


class CandidateSettings(WindowScore):
    """What one selection candidate trained and how it scored windows."""

    variant: str
    window: int = Field(ge=1)
    code: int | None = None

    def describe(self) -> str:
        """``conv w30 (recent, norm, residual)``: the candidate in a few words."""
        agg = [self.time_weighting + ("" if self.half_life is None else f" {self.half_life:g}")]
        agg += (["norm"] if self.feature_norm else []) + (["max"] if self.feature_pool == "max" else [])
        agg += ["residual"] if self.reading_residual else []
        code = "" if self.code is None else f" code {self.code}"
        return f"{self.variant} w{self.window}{code} ({', '.join(agg)})"


class ValidationScores(_Strict):
    """A candidate on the faulted validation stream, flagged at its calibrated threshold."""

    f1: float = Field(ge=0, le=1)
    average_precision: float = Field(ge=0, le=1)
    precision: float = Field(ge=0, le=1)
    recall: float = Field(ge=0, le=1)
    false_alarm_rate_pct: float = Field(ge=0, le=100)


class Candidate(_Strict):
    settings: CandidateSettings
    scores: ValidationScores
    threshold: float = Field(gt=0)
    epochs: int = Field(ge=1)
    train_seconds: float = Field(ge=0)


class Selection(_Strict):
    """How the bundle's detector was chosen without labels (``training/selection.py``):
    every candidate on held-out normal readings with synthetic faults injected."""

    search: Literal["quick", "default", "wide"]
    metric: Literal["f1"] = Field("f1", description="point-wise, at each candidate's calibrated threshold")
    tie_break: Literal["average_precision"] = "average_precision"
    fault_kinds: list[str] = Field(min_length=1)
    seed: int
    replicas: int = Field(ge=1, description="independent fault placements of the validation readings")
    faults: int = Field(ge=0, description="faults injected in all")
    windows: int = Field(ge=0, description="validation readings in all copies, each ending a window")
    labelled_windows: int = Field(ge=0, description="...of which inside an injected fault")
    pinned: list[str] = Field(default_factory=list, description="settings the user fixed")
    candidates: list[Candidate] = Field(min_length=1)
    chosen: int = Field(ge=0, description="index into candidates")

    @model_validator(mode="after")
    def _chosen_exists(self) -> Selection:
        if self.chosen >= len(self.candidates):
            raise ValueError(f"chosen is {self.chosen}, but there are {len(self.candidates)} candidates")
        return self


class Manifest(_Strict):
    format_version: Literal[2] = FORMAT_VERSION
    model_version: str
    variant: str
    features: list[str] = Field(min_length=1)
    fields: list[InputField] = Field(
        default_factory=list, description="every column of the training file, its kind"
    )
    context: Context | None = Field(None, description="the per-key context features (core/encoding.py)")
    window: int = Field(ge=1)
    stride: int = Field(ge=1)
    scaler: Scaler
    loss: Literal["mse", "bce"] = "mse"
    code_size: int = Field(ge=1, description="width of the graph's 'code' output (latent vector)")
    threshold: Threshold
    feature_error_scale: list[Annotated[float, Field(gt=0)]] = Field(
        description="mean per-feature error on held-out normal windows: ranks contributions "
        "fairly, and normalises the score when score.feature_norm is set"
    )
    score: ScoreSpec = ScoreSpec()
    postprocess: PostSpec = PostSpec()
    adapt: AdaptSpec = AdaptSpec()
    selection: Selection | None = Field(None, description="the search that chose it; None: pinned")
    metrics: dict[str, float] = {}
    training: dict[str, Any] = {}
    created_at: datetime
    versions: dict[str, str] = {}
    checksum: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    extras: dict[str, Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]] = Field(
        default_factory=dict,
        description="further files of the bundle (e.g. decoder.onnx) and their checksums",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        n = len(self.features)
        if len(set(self.features)) != n:
            raise ValueError("features contains duplicates")
        if len(self.scaler.mean) != n:
            raise ValueError(f"scaler has {len(self.scaler.mean)} entries for {n} features")
        if len(self.feature_error_scale) != n:
            raise ValueError(f"feature_error_scale has {len(self.feature_error_scale)} entries")
        score = self.score
        if score.reading_residual:
            rows, k = len(score.residual_components), len(score.residual_components[0])
            if rows != n or k >= n:
                raise ValueError(
                    f"score.residual_components is {rows} x {k}; {n} features need {n} rows of k < {n}"
                )
            for name in ("residual_center", "residual_weight"):
                if len(getattr(score, name)) != n:
                    raise ValueError(f"score.{name} has {len(getattr(score, name))} entries for {n} features")
        post = self.postprocess
        if post.range_widen is not None and not (len(post.range_lo) == len(post.range_hi) == n):
            raise ValueError(f"postprocess.range_lo/range_hi need {n} entries for the range rule")
        adapt = self.adapt
        if adapt.half_life is not None and not (len(adapt.ref_mean) == len(adapt.ref_std) == n):
            raise ValueError(f"adapt.ref_mean/ref_std need {n} entries for streaming normalisation")
        if (self.fields or self.context) and self.encoding().features != self.features:
            raise ValueError(f"features are not the columns 'fields' encode: {self.encoding().features}")
        return self

    def encoding(self) -> Encoding:  # the inputs a reading carries, how they become features
        return Encoding.of(self.features, self.fields, self.context)

    @model_serializer(mode="wrap")
    def _fields_only_when_some_are_not_features(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        # a bundle of numeric columns only stays readable by a daemon that predates `fields`
        data: dict[str, Any] = handler(self)
        for name in ("fields", "context"):
            if not data.get(name):
                data.pop(name, None)
        return data
