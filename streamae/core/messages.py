"""The message contract on Kafka: input readings, output scores and alert events.

These pydantic models are the single source of the JSON Schemas in ``docs/schemas``
(``streamae schema``) and validate messages in tests and tools. The hot path does not
build them per message: ``decode`` parses readings with orjson, and ``scoring`` /
``alerts`` emit plain dicts that these models accept (tests hold them to that).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reading(_Message):
    """One observation of one entity: a sensor, a machine, an account."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "key": "pump-7",
                    "ts": "2026-01-01T00:00:00Z",
                    "values": {"temperature": 61.2, "pressure": 3.1},
                }
            ]
        },
    )

    key: str | None = Field(None, description="entity key; when absent the Kafka record key is used")
    ts: float | datetime = Field(description="event time: epoch seconds or ISO 8601")
    values: dict[str, float] = Field(description="numeric value by feature name")


#: A message on the input topic: one reading, or a list of readings.
ReadingMessage = TypeAdapter(Reading | list[Reading])


class Source(_Message):
    """Where a window came from: the offsets of its first and last reading."""

    topic: str
    partition: int
    offset_start: int
    offset_end: int


class FeatureContribution(_Message):
    feature: str
    share: float = Field(ge=0, le=1, description="fraction of the window's error")


class ScoreMessage(_Message):
    """The score of one window, stamped with the key and time of its last reading."""

    key: str
    window_start: float = Field(description="epoch seconds of the first reading")
    window_end: float = Field(description="epoch seconds of the last reading")
    score: float = Field(
        ge=0,
        description="what meets the threshold: raw_score, EWMA-smoothed per key if the bundle says so",
    )
    raw_score: float = Field(
        ge=0, description="mean squared reconstruction error of the window (scaled units)"
    )
    threshold: float
    is_anomaly: bool
    top_features: list[FeatureContribution]
    model_version: str
    source: Source


class AlertEvent(_Message):
    """An alert opens and later closes: two events sharing ``alert_id``."""

    event: Literal["open", "close"]
    alert_id: str
    key: str
    start: float = Field(description="window_end of the window that opened it")
    end: float | None = Field(description="window_end of the last anomalous window (close only)")
    peak_score: float
    threshold: float
    severity: str
    top_features: list[FeatureContribution]
    windows: int = Field(description="anomalous windows so far")
    model_version: str


class DeadLetter(_Message):
    """A record the daemon could not use, with the reason."""

    reason: str
    topic: str
    partition: int
    offset: int
    index: int | None = Field(None, description="position of the reading in a list message")
    key: str | None
    value: str = Field(description="the original bytes (the first 64 KiB), decoded as UTF-8 with replacement")
    value_bytes: int = Field(ge=0, description="size of the original value")


SCHEMAS: dict[str, object] = {
    "reading": ReadingMessage,
    "score": ScoreMessage,
    "alert": AlertEvent,
    "dead-letter": DeadLetter,
}


def json_schema(name: str) -> dict[str, object]:
    """The JSON Schema of one message kind (``reading``, ``score``, ``alert``, ``dead-letter``)."""
    model = SCHEMAS[name]
    if isinstance(model, TypeAdapter):
        return model.json_schema()
    assert isinstance(model, type) and issubclass(model, BaseModel)
    return model.model_json_schema()


def write_schemas(directory: Path) -> list[Path]:
    """Write every message schema as ``<name>.schema.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCHEMAS:
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
