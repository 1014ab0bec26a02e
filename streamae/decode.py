"""Decode Kafka records into columnar :class:`Readings`; bad records become dead letters.

This is the hot path of the daemon (JSON parsing costs more than the model), so it
uses orjson, touches each reading once and leaves numeric checks to one numpy pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import orjson

from streamae.readings import Readings


class RecordLike(Protocol):
    """What decoding needs of a kafka-python ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Rejected:
    """A record (or one reading of a list message) that cannot be scored, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    index: int | None = None


def parse_timestamp(ts: Any) -> float:
    """Epoch seconds from a number or an ISO 8601 string (UTC when no offset is given)."""
    if isinstance(ts, bool):
        raise ValueError("timestamp must be a number or an ISO 8601 string, not a boolean")
    if isinstance(ts, (int, float)):
        value = float(ts)
    elif isinstance(ts, str):
        parsed = datetime.fromisoformat(ts[:-1] + "+00:00" if ts.endswith("Z") else ts)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        value = parsed.timestamp()
    else:
        raise ValueError(f"timestamp must be a number or an ISO 8601 string, got {ts!r}")
    if not math.isfinite(value):
        raise ValueError("timestamp is not finite")
    return value


class ReadingDecoder:
    """Decodes reading messages for a fixed, ordered feature list (the bundle's)."""

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)

    def decode(
        self, records: Sequence[RecordLike], topic: str = "", partition: int = 0
    ) -> tuple[Readings, list[Rejected]]:
        """Decode records of one partition, in order."""
        keys: list[str] = []
        ts: list[float] = []
        rows: list[list[Any]] = []
        offsets: list[int] = []
        origins: list[tuple[RecordLike, int | None]] = []
        rejected: list[Rejected] = []
        features = self.features
        for rec in records:
            try:
                doc = orjson.loads(rec.value) if rec.value is not None else None
            except orjson.JSONDecodeError as exc:
                rejected.append(_reject(rec, f"invalid JSON: {exc}"))
                continue
            items, many = (doc, True) if isinstance(doc, list) else ([doc], False)
            for i, item in enumerate(items):
                index = i if many else None
                try:
                    if not isinstance(item, dict):
                        raise ValueError(f"a reading must be a JSON object, got {type(item).__name__}")
                    values = item["values"]
                    row = [values[f] for f in features]
                    key = item.get("key")
                    if key is None:
                        if rec.key is None:
                            raise ValueError("no 'key' field and no record key")
                        key = rec.key.decode("utf-8", "replace")
                    elif not isinstance(key, str):
                        raise ValueError(f"'key' must be a string, got {type(key).__name__}")
                    stamp = parse_timestamp(item["ts"])
                except KeyError as exc:
                    rejected.append(_reject(rec, f"missing field {exc}", index))
                    continue
                except (ValueError, TypeError) as exc:
                    rejected.append(_reject(rec, str(exc), index))
                    continue
                keys.append(key)
                ts.append(stamp)
                rows.append(row)
                offsets.append(rec.offset)
                origins.append((rec, index))

        if not rows:
            return Readings.empty(len(features), topic, partition), rejected
        values_arr, bad_rows = self._to_matrix(rows)
        good = np.ones(len(rows), dtype=bool)
        for r, reason in bad_rows:
            good[r] = False
            rec, index = origins[r]
            rejected.append(_reject(rec, reason, index))
        readings = Readings(
            keys=np.array(keys, dtype=object)[good],
            ts=np.array(ts, dtype=np.float64)[good],
            values=values_arr[good],
            offsets=np.array(offsets, dtype=np.int64)[good],
            topic=topic,
            partition=partition,
        )
        return readings, rejected

    def _to_matrix(self, rows: list[list[Any]]) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """One vectorised conversion; per-row checks only when the batch holds a bad value."""
        bad: list[tuple[int, str]] = []
        try:
            # dtype inference is the vectorised type check: any string, null or nested
            # value turns the whole array into a non-numeric kind.
            matrix = np.array(rows)
            if matrix.dtype.kind not in "fiu" or matrix.ndim != 2:
                raise TypeError
            with np.errstate(over="ignore"):
                matrix = matrix.astype(np.float32)
        except (TypeError, ValueError):
            matrix = np.zeros((len(rows), len(self.features)), dtype=np.float32)
            for r, row in enumerate(rows):
                for f, v in zip(self.features, row):
                    if type(v) not in (int, float):
                        bad.append((r, f"value of '{f}' is not a number: {v!r}"))
                        break
                else:
                    matrix[r] = row
        finite = np.isfinite(matrix).all(axis=1)
        already = {r for r, _ in bad}
        for r in np.flatnonzero(~finite):
            if int(r) not in already:
                f = self.features[int(np.flatnonzero(~np.isfinite(matrix[r]))[0])]
                bad.append((int(r), f"value of '{f}' is not finite (or overflows float32)"))
        return matrix, bad


def _reject(rec: RecordLike, reason: str, index: int | None = None) -> Rejected:
    return Rejected(rec.topic, rec.partition, rec.offset, rec.key, rec.value, reason, index)
