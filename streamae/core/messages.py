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
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from streamae.core.categories import MAX_CATEGORY_CHARS


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
    values: dict[str, float | Annotated[str, Field(max_length=MAX_CATEGORY_CHARS)] | bool | None] = Field(
        description="value by input field: a number for a numeric field; text (at most 256 "
        "characters), a boolean or null for a categorical or boolean field (a value the bundle "
        "never saw is its 'other' category, never a dead letter)"
    )


#: A message on the input topic: one reading, or a list of readings.
ReadingMessage = TypeAdapter(Reading | list[Reading])


class Source(_Message):
    """Where a window came from: the offsets of its first and last reading."""

    topic: str
    partition: int
    offset_start: int
    offset_end: int


class BatchSource(_Message):
    """The input partition of a batch message's windows (their offsets are arrays)."""

    topic: str
    partition: int


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
        ge=0, description="the window's pooled reconstruction error (scaled units; see docs/models.md)"
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


class ScoreBatchMessage(_Message):
    """The scores of one key's windows in one micro-batch, one array per field, in window
    order (``STREAMAE_OUTPUT__SCORES=batch``); element ``i`` of every array is window ``i``."""

    key: str
    model_version: str
    threshold: float
    source: BatchSource
    window_start: list[float] = Field(description="epoch seconds of each window's first reading")
    window_end: list[float] = Field(description="epoch seconds of each window's last reading")
    score: list[Annotated[float, Field(ge=0)]] = Field(description="what meets the threshold")
    raw_score: list[Annotated[float, Field(ge=0)]]
    is_anomaly: list[bool]
    offset_start: list[int] = Field(description="offset of each window's first reading")
    offset_end: list[int] = Field(description="offset of each window's last reading")
    top_features: list[list[str]] = Field(description="per window, the top features by share of the error")
    top_shares: list[list[Annotated[float, Field(ge=0, le=1)]]] = Field(description="...and their shares")


#: Every dead letter's ``reason_code`` (docs/messages.md says what each means).
ReasonCode = Literal[
    "invalid_json",
    "empty_list",
    "not_an_object",
    "missing_field",
    "not_a_number",
    "invalid_key",
    "key_too_long",
    "invalid_timestamp",
    "timestamp_out_of_range",
    "window_abandoned",
    "output_too_large",
    "output_rejected",
    "invalid_reading",
]


class DeadLetter(_Message):
    """A record the daemon could not use (or an output it could not publish), with the reason."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "reason": "missing field 'temperature'",
                    "reason_code": "missing_field",
                    "topic": "streamae.readings",
                    "partition": 2,
                    "offset": 2881,
                    "index": None,
                    "key": "machine-02",
                    "value": '{"key":"machine-02","ts":1767491940,"values":{"pressure":3.1}}',
                    "value_bytes": 63,
                    "truncated": False,
                }
            ]
        },
    )

    reason: str = Field(description="why, for people (at most 1,000 characters)")
    reason_code: ReasonCode = Field(description="why, for machines; also the streamae.reason_code header")
    topic: str = Field(description="the input record's topic")
    partition: int
    offset: int
    index: int | None = Field(None, description="position of the reading in a list message")
    key: str | None = Field(description="the record key (its first 1,000 characters)")
    value: str = Field(
        description="the start of the original bytes (at most 64 KiB, less when the record would "
        "exceed STREAMAE_OUTPUT__MAX_MESSAGE_BYTES), decoded as UTF-8 with replacement"
    )
    value_bytes: int = Field(ge=0, description="size of the original value")
    truncated: bool = Field(description="whether value holds less than the original")


SCHEMAS: dict[str, object] = {
    "reading": ReadingMessage,
    "score": ScoreMessage,
    "score-batch": ScoreBatchMessage,
    "alert": AlertEvent,
    "dead-letter": DeadLetter,
}


def json_schema(name: str) -> dict[str, object]:
    """The JSON Schema of one message kind (``reading``, ``score``, ``score-batch``, ``alert``,
    ``dead-letter``)."""
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
