"""The ``train`` settings section (``STREAMAE_TRAIN__*``): what ``streamae train`` fits and how
it scores, calibrates and post-processes. Imported by ``config.py``, which re-exports it."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from streamae.core.manifest import Adaptation, PostProcessing, Smoothing, ThresholdMethod, WindowScore
from streamae.core.renamed import ADAPT_FLATTENED, accept_old_names

# the autoencoder family (streamae.training.models builds them; kept here so settings need no torch)
Variant = Literal["dense", "denoising", "sparse", "contractive", "variational", "conv", "lstm", "pca"]
VARIANTS: tuple[str, ...] = get_args(Variant)


SearchBreadth = Literal["quick", "default", "wide"]


class TrainSettings(WindowScore, PostProcessing, Smoothing):
    """``streamae train`` defaults (``STREAMAE_TRAIN__*``); command-line flags override them.

    ``variant="auto"`` selects the detector on held-out history with injected faults
    (``streamae.training.selection``); ``streamae train`` does so whenever no variant is set
    (neither ``--variant`` nor ``STREAMAE_TRAIN__VARIANT``). The field's default, ``dense``,
    is what :func:`streamae.training.fit.fit` trains when a caller sets no variant. Other
    fields set by the user (``model_fields_set``: a flag or a variable) are pinned during
    selection: ``--window 30`` searches variants and score aggregations at window 30 only.
    The window score's, post-processing's and smoothing's fields come from
    :class:`~streamae.core.manifest.WindowScore`, :class:`~streamae.core.manifest.PostProcessing`
    and :class:`~streamae.core.manifest.Smoothing`; streaming normalisation is the nested
    ``adapt`` section (:class:`~streamae.core.manifest.Adaptation`:
    ``STREAMAE_TRAIN__ADAPT__HALF_LIFE``, ``--adapt-half-life``).
    """

    # as every section of config.Settings; non-finite numbers refused, as in the manifest
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: flat old names of the ``adapt`` section's fields, still accepted (with a warning)
    old_flat_names: ClassVar[dict[str, str]] = ADAPT_FLATTENED

    variant: Literal[Variant, "auto"] = Field(
        "dense",
        description="autoencoder family member; auto: choose one on held-out history with "
        "injected faults (what `streamae train` does when no variant is set)",
    )
    search: SearchBreadth = Field(
        "default", description="auto: breadth of the search (quick: fewer candidates, wide: more)"
    )
    window: int = Field(30, ge=1, description="readings per window")
    stride: int = Field(1, ge=1, description="new readings between windows")
    hidden: int | None = Field(None, ge=1, description="hidden width (conv: channels of the first layer)")
    code: int | None = Field(
        None, ge=0, description="code size (conv: channels; pca: components, 0 = 95 % variance)"
    )
    loss: Literal["mse", "bce"] = Field(
        "mse", description="bce: inputs min-max scaled to [0, 1], sigmoid out"
    )
    epochs: int = Field(60, ge=1, description="maximum; early stopping usually ends sooner")
    batch_size: int = Field(256, ge=1, description="windows per optimiser step")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    lr_schedule: Literal["plateau", "cosine", "constant"] = Field(
        "plateau", description="learning rate: halve on a validation plateau, cosine decay, or fixed"
    )
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 weight decay")
    patience: int = Field(6, ge=1, description="epochs without validation improvement before stopping")
    noise: float = Field(0.2, ge=0, description="denoising: corruption std (standardised units)")
    sparsity: float = Field(1e-3, ge=0, description="sparse: L1 weight on the code")
    contractive: float = Field(1e-3, ge=0, description="contractive: weight of the Jacobian penalty")
    beta: float = Field(1.0, ge=0, description="variational: weight of the KL term")
    threshold: ThresholdMethod = Field("quantile", description="calibration method")
    quantile: float = Field(0.995, gt=0, lt=1, description="quantile method: quantile of normal scores")
    sigma_k: float = Field(4.0, gt=0, description="sigma method: mean + k·std")
    target_far: float = Field(1e-3, gt=0, lt=1, description="pot method: false-alarm probability per window")
    adapt: Adaptation = Field(
        default_factory=Adaptation, description="streaming normalisation of each key's readings"
    )
    ignore: list[str] = Field(
        default_factory=list,
        description="columns of the history the model leaves out (an identifier, a column the "
        "stream will not carry); every other column is read by its kind (core/fields.py)",
    )
    categorical: list[str] = Field(
        default_factory=list,
        description="columns read as categories though they hold numbers (a merchant category "
        "code) or hardly repeat (an identifier: its most frequent values are kept)",
    )
    numeric: list[str] = Field(
        default_factory=list, description="boolean columns read as numbers 0/1 instead of categories"
    )
    max_categories: int = Field(
        20,
        ge=1,
        description="categories kept per categorical field, most frequent first; the rest are 'other'",
    )
    context: Literal["auto", "on", "off"] = Field(
        "auto",
        description="per-key context features (amount against the key's median, values new for "
        "the key, time since its previous reading, bursts: core/encoding.py); auto: on when some "
        "field is categorical and the history has keys",
    )
    context_recent_s: float = Field(
        600.0, gt=0, description="context: the burst count looks back this many seconds"
    )
    seed: int = Field(0, description="seeds weights, shuffling and corruption: reruns are identical")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1")
    threads: int = Field(
        1,
        ge=0,
        description="CPU threads torch trains with (0: torch's default); these small models "
        "train fastest on one, and several threads contend badly on a busy machine",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_adapt_names(cls, data: Any) -> Any:
        return accept_old_names(data, ADAPT_FLATTENED, cls.__name__)

    @field_validator("code")
    @classmethod
    def _code_zero_is_pca_only(cls, code: int | None, info: ValidationInfo) -> int | None:
        if code == 0 and info.data.get("variant") != "pca":
            raise ValueError("0 (components for 95 % of the variance) is for pca only; networks need >= 1")
        return code

    @field_validator("loss")
    @classmethod
    def _bce_needs_a_network(cls, loss: str, info: ValidationInfo) -> str:
        if loss == "bce" and info.data.get("variant") == "pca":
            raise ValueError("pca reconstructs linearly; bce needs a network with a sigmoid output")
        return loss
