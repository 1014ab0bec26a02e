"""Model bundles: ``model.onnx`` plus a strict ``manifest.json``.

A bundle is written atomically (a temporary directory, then a rename) and checked on
load: manifest schema, ONNX checksum, and the graph's input shape against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MANIFEST = "manifest.json"
MODEL = "model.onnx"
FORMAT_VERSION: Final = 2  # 2: threshold calibration record, code output, extras
INPUT_NAME = "windows"
OUTPUT_NAME = "reconstruction"
CODE_NAME = "code"
DECODER = "decoder.onnx"  # variational bundles: code → reconstruction, for `streamae sample`


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and field."""


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


class Threshold(_Strict):
    """The alert threshold and how it was calibrated on held-out normal windows."""

    value: float = Field(gt=0)
    method: Literal["quantile", "sigma", "pot"] = "quantile"
    params: dict[str, float] = Field(
        default_factory=dict, description="what set it: quantile, k, target_far, fitted tail..."
    )
    ewma_alpha: float = Field(
        1.0, gt=0, le=1, description="scores are smoothed per key with this EWMA weight first (1: off)"
    )
    calibration_windows: int = Field(ge=1, description="held-out normal windows it was set on")


class ScoreSpec(_Strict):
    """How a window's reconstruction errors become its score (see ``core/scoring.py``)."""

    time_weighting: Literal["uniform", "recent"] = Field(
        "uniform", description="recent: weights halve every half_life readings back from the newest"
    )
    half_life: float | None = Field(None, gt=0, description="readings; None: a quarter of the window")
    feature_norm: bool = Field(
        False, description="divide each feature's error by its held-out normal mean before pooling"
    )
    feature_pool: Literal["mean", "max"] = "mean"


class Manifest(_Strict):
    format_version: Literal[2] = FORMAT_VERSION
    model_version: str
    variant: str
    features: list[str] = Field(min_length=1)
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
        return self


class Bundle:
    """A loaded, verified bundle: the manifest and the ONNX bytes."""

    def __init__(self, path: Path, manifest: Manifest, model_bytes: bytes) -> None:
        self.path = path
        self.manifest = manifest
        self.model_bytes = model_bytes

    def extra(self, name: str) -> bytes:
        """A further file of the bundle, checked against the manifest's ``extras`` checksum."""
        if name not in self.manifest.extras:
            raise BundleError(f"bundle {self.path}: has no {name} (manifest field 'extras')")
        data = (self.path / name).read_bytes()
        if sha256(data) != self.manifest.extras[name]:
            raise BundleError(f"{self.path / name}: checksum mismatch (manifest field 'extras.{name}')")
        return data

    @property
    def features(self) -> list[str]:
        return self.manifest.features


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_bundle(path: Path | str) -> Bundle:
    """Load and verify a bundle directory; raise :class:`BundleError` naming what is wrong."""
    path = Path(path)
    manifest_path, model_path = path / MANIFEST, path / MODEL
    for p in (manifest_path, model_path):
        if not p.is_file():
            raise BundleError(f"bundle {path}: missing {p.name}")
    try:
        raw = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON: {exc}") from None
    if isinstance(raw, dict) and raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: field 'format_version' is {raw.get('format_version')!r}; this streamae "
            f"reads format {FORMAT_VERSION}: retrain the bundle with `streamae train`"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(manifest)'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(f"{manifest_path}: invalid manifest: {fields}") from None
    model_bytes = model_path.read_bytes()
    if sha256(model_bytes) != manifest.checksum:
        raise BundleError(
            f"{model_path}: checksum mismatch (manifest field 'checksum' says "
            f"{manifest.checksum}, file is {sha256(model_bytes)})"
        )
    return Bundle(path, manifest, model_bytes)


def write_bundle(
    path: Path | str,
    model_bytes: bytes,
    fields: dict[str, Any],
    *,
    extras: dict[str, bytes] | None = None,
    overwrite: bool = True,
) -> Bundle:
    """Write ``model.onnx`` and a manifest built from ``fields``, atomically.

    ``checksum`` and ``created_at`` are filled in here; a failed write leaves nothing behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path} exists")
    extras = extras or {}
    fields = {
        "created_at": datetime.now(timezone.utc),
        **fields,
        "checksum": sha256(model_bytes),
        "extras": {name: sha256(data) for name, data in extras.items()},
    }
    manifest = Manifest.model_validate(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / MODEL).write_bytes(model_bytes)
        for name, data in extras.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(path, manifest, model_bytes)
