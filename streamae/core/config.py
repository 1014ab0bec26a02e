"""Settings: environment (``STREAMAE_`` prefix, ``__`` for nesting), ``.env``, or keywords.

``load_settings`` turns every mistake into one :class:`ConfigError` that names the
offending field as the environment variable a user would set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar, get_origin

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# re-exported: `from streamae.core.config import KafkaSettings, ModelSettings, TrainSettings` are
# the public names
from streamae.core.kafka_settings import KafkaSettings as KafkaSettings
from streamae.core.kafka_settings import Section as _Section
from streamae.core.manifest import ThresholdMethod as ThresholdMethod
from streamae.core.model_settings import ModelSettings as ModelSettings
from streamae.core.train_settings import VARIANTS as VARIANTS
from streamae.core.train_settings import SearchBreadth as SearchBreadth
from streamae.core.train_settings import TrainSettings as TrainSettings
from streamae.core.train_settings import Variant as Variant

ENV_PREFIX = "STREAMAE_"
ENV_DELIMITER = "__"
_S = TypeVar("_S", bound=BaseSettings)


class ConfigError(ValueError):
    """Invalid configuration; the message names each bad field."""


class WindowSettings(_Section):
    idle_ttl_s: float = Field(
        7 * 86400.0,
        ge=0,
        description="forget a key's partial window after this much event time without a "
        "reading (0: never); bounds replay after restarts and memory",
    )


class OutputSettings(_Section):
    """What the daemon publishes (docs/messages.md)."""

    scores: Literal["all", "above", "batch"] = Field(
        "all",
        description="all: a score message per window; above: only windows scoring at least "
        "above_fraction x threshold; batch: one columnar message per key per micro-batch. Alerts "
        "and dead letters are never thinned",
    )
    above_fraction: float = Field(0.5, ge=0, description="scores=above: the fraction of the threshold")
    max_message_bytes: int = Field(
        921_600,
        ge=16_384,
        le=1_000_000,  # the clients' own request limits (librdkafka's message.max.bytes)
        description="largest record published (value, key and headers, serialised): under the "
        "broker's 1 MiB default; larger dead letters are truncated, larger outputs split or "
        "dead-lettered",
    )
    max_held: int = Field(
        100_000,
        ge=1,
        description="outputs held or not yet acknowledged; this many make a commit due at once, and "
        "while deliveries fail consumption stays paused",
    )


class BatchSettings(_Section):
    max_windows: int = Field(4096, ge=1, description="score as soon as this many windows wait")
    max_wait_ms: int = Field(200, ge=1, description="...or when the oldest has waited this long")


class AlertSettings(_Section):
    k: int = Field(3, ge=1, description="windows over threshold among the last n that open an alert")
    n: int = Field(5, ge=1, validate_default=True, description="at least k")
    quiet_windows: int = Field(10, ge=1, description="consecutive normal windows that close it")
    cooldown_s: float = Field(0.0, ge=0, description="event time after a close with no new open")
    severity_ratios: dict[str, float] = Field(
        default_factory=lambda: {"warning": 1.0, "major": 2.0, "critical": 4.0},
        description="severity name -> minimum peak score / threshold",
    )

    @field_validator("n")
    @classmethod
    def _n_at_least_k(cls, n: int, info: ValidationInfo) -> int:
        k = info.data.get("k")
        if k is not None and n < k:
            raise ValueError(f"must be at least k ({k})")
        return n

    @field_validator("severity_ratios")
    @classmethod
    def _levels(cls, ratios: dict[str, float]) -> dict[str, float]:
        if not ratios:
            raise ValueError("needs at least one level")
        if any(not (r >= 0 and r < float("inf")) for r in ratios.values()):
            raise ValueError("every ratio must be a finite number >= 0")
        return ratios


_SOURCES = SettingsConfigDict(
    env_prefix=ENV_PREFIX,
    env_nested_delimiter=ENV_DELIMITER,
    env_file=".env",
    extra="ignore",  # a shared .env may hold other tools' variables; ours are checked
    frozen=True,
)


class Settings(BaseSettings):
    """All daemon settings. Example: ``STREAMAE_KAFKA__BOOTSTRAP_SERVERS=host:9092``."""

    model_config = _SOURCES

    kafka: KafkaSettings = KafkaSettings()
    model: ModelSettings = ModelSettings()
    batch: BatchSettings = BatchSettings()
    output: OutputSettings = OutputSettings()
    windows: WindowSettings = WindowSettings()
    alerts: AlertSettings = AlertSettings()
    metrics_port: int = Field(
        0, ge=0, le=65535, description="HTTP port of /metrics, /healthz and /ready; 0 disables"
    )
    metrics_host: str = Field("0.0.0.0", description="address the metrics and health server binds")
    liveness_s: float = Field(
        120.0,
        gt=0,
        description="/healthz fails when the loop has not polled for this long (a commit waits "
        "for acknowledgements up to request_timeout_ms, twice, so keep it above 3x that)",
    )
    stall_s: float = Field(
        60.0,
        gt=0,
        description="/ready fails (and a warning is logged) when an assigned partition with lag "
        "has yielded no record for this long",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per line")
    log_rate_limit: int = Field(
        10,
        ge=0,
        description="repeated warnings (same logger, message template and reason) logged at most "
        "this many times a minute, then one summary; 0: no limit",
    )


class TrainerSettings(BaseSettings):
    """What ``streamae train`` and ``calibrate`` read (``STREAMAE_TRAIN__*``), from the same
    environment and ``.env`` as the daemon, which does not carry them."""

    model_config = _SOURCES

    train: TrainSettings = TrainSettings()
    registry: Path = Field(
        Path("registry"), description="model registry directory (`streamae models`, `streamae retrain`)"
    )


def env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable that sets the field at pydantic location ``loc``."""
    return ENV_PREFIX + ENV_DELIMITER.join(str(part) for part in loc).upper()


def _unknown_env_vars(names: list[str]) -> list[str]:
    """STREAMAE_* names that match no field: a typo must not be silently ignored."""
    known: set[str] = set()
    mapping_prefixes: list[str] = []  # dict fields also take STREAMAE_..__FIELD__KEY

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            loc = (*prefix, name)
            known.add(env_name(loc))
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, loc)
                old_names = {*getattr(ann, "renamed", {}), *getattr(ann, "old_flat_names", {})}
                known.update(env_name((*loc, old)) for old in old_names)
            elif get_origin(ann) is dict:
                mapping_prefixes.append(env_name(loc) + ENV_DELIMITER)

    walk(Settings, ())
    walk(TrainerSettings, ())
    return sorted(
        n
        for n in names
        if n.upper().startswith(ENV_PREFIX)
        and n.upper() not in known
        and not n.upper().startswith(tuple(mapping_prefixes))
    )


def load_settings(flag_names: dict[tuple[Any, ...], str] | None = None, **overrides: Any) -> Settings:
    """Build the daemon's settings from the environment, ``.env`` and ``overrides``; fail with
    field names. ``flag_names`` names overridden fields as the command-line flags that set them.
    """
    return _load(Settings, flag_names, overrides)


def load_train_settings(
    flag_names: dict[tuple[Any, ...], str] | None = None, **overrides: Any
) -> TrainSettings:
    """:func:`load_settings` for ``streamae train``: the ``train`` section, ``overrides`` on top."""
    return _load(TrainerSettings, flag_names, {"train": overrides}).train


def load_trainer_settings(**overrides: Any) -> TrainerSettings:
    """What the offline commands read: the ``train`` section and the registry location."""
    return _load(TrainerSettings, None, overrides)


def _load(kind: type[_S], flag_names: dict[tuple[Any, ...], str] | None, overrides: dict[str, Any]) -> _S:
    dotenv = Path(".env")
    names = [*os.environ, *(dotenv_values(dotenv) if dotenv.is_file() else {})]
    unknown = _unknown_env_vars(names)
    if unknown:
        raise ConfigError("unknown setting(s): " + ", ".join(unknown))
    try:
        return kind(**overrides)
    except ValidationError as exc:
        flags = flag_names or {}
        lines = [f"  {flags.get(tuple(e['loc']), env_name(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
