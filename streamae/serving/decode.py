"""Decode Kafka records into columnar :class:`Readings`; bad records become dead letters.

This is the hot path of the daemon (JSON parsing costs more than the model), so it
uses orjson, touches each reading once and leaves numeric checks to one numpy pass.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import orjson

from streamae.core.readings import Readings


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
        getter = operator.itemgetter(*self.features)
        # itemgetter of one name returns a bare value; keep rows as tuples either way
        self._row = getter if len(self.features) > 1 else (lambda v: (getter(v),))

    def decode(
        self, records: Sequence[RecordLike], topic: str = "", partition: int = 0
    ) -> tuple[Readings, list[Rejected]]:
        """Decode records of one partition, in order."""
        keys: list[str] = []
        stamps: list[Any] = []
        rows: list[tuple[Any, ...]] = []
        offsets: list[int] = []
        origins: list[tuple[RecordLike, int | None]] = []
        rejected: list[Rejected] = []
        row_of = self._row
        for rec in records:
            try:
                doc = orjson.loads(rec.value) if rec.value is not None else None
            except orjson.JSONDecodeError as exc:
                rejected.append(_reject(rec, f"invalid JSON: {exc}"))
                continue
            items, many = (doc, True) if type(doc) is list else ((doc,), False)
            if many and not items:
                rejected.append(_reject(rec, "empty list: no readings"))
                continue
            for i, item in enumerate(items):
                try:
                    if type(item) is not dict:
                        raise TypeError(f"a reading must be a JSON object, got {type(item).__name__}")
                    values = item["values"]
                    if type(values) is not dict:
                        raise TypeError(f"'values' must be an object of numbers, got {type(values).__name__}")
                    row = row_of(values)
                    stamp = item["ts"]
                    if stamp is True or stamp is False:  # numpy would read it as 0/1
                        raise TypeError("timestamp must be a number or an ISO 8601 string, not a boolean")
                    key = item.get("key")
                    if type(key) is not str:
                        key = self._fallback_key(key, rec)
                except KeyError as exc:
                    rejected.append(_reject(rec, f"missing field {exc}", i if many else None))
                    continue
                except (ValueError, TypeError) as exc:
                    rejected.append(_reject(rec, str(exc), i if many else None))
                    continue
                keys.append(key)
                stamps.append(stamp)
                rows.append(row)
                offsets.append(rec.offset)
                origins.append((rec, i if many else None))

        if not rows:
            return Readings.empty(len(self.features), topic, partition), rejected
        values, bad = self._to_matrix(rows)
        ts, bad_ts = _to_timestamps(stamps)
        bad.update((r, reason) for r, reason in bad_ts.items() if r not in bad)
        good = np.ones(len(rows), dtype=bool)
        for r, reason in sorted(bad.items()):
            good[r] = False
            rec, index = origins[r]
            rejected.append(_reject(rec, reason, index))
        readings = Readings(
            keys=np.array(keys, dtype=object)[good],
            ts=ts[good],
            values=values[good],
            offsets=np.array(offsets, dtype=np.int64)[good],
            topic=topic,
            partition=partition,
        )
        return readings, rejected

    @staticmethod
    def _fallback_key(key: Any, rec: RecordLike) -> str:
        if key is not None:
            raise TypeError(f"'key' must be a string, got {type(key).__name__}")
        if rec.key is None:
            raise ValueError("no 'key' field and no record key")
        return rec.key.decode("utf-8", "replace")

    def _to_matrix(self, rows: list[tuple[Any, ...]]) -> tuple[np.ndarray, dict[int, str]]:
        """One vectorised conversion; per-row checks only when the batch holds a bad value."""
        bad: dict[int, str] = {}
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
                        bad[r] = f"value of '{f}' is not a number: {v!r}"
                        break
                else:
                    matrix[r] = row
        for r in np.flatnonzero(~np.isfinite(matrix).all(axis=1)).tolist():
            if r not in bad:
                f = self.features[int(np.flatnonzero(~np.isfinite(matrix[r]))[0])]
                bad[r] = f"value of '{f}' is not finite (or overflows float32)"
        return matrix, bad


def _to_timestamps(stamps: list[Any]) -> tuple[np.ndarray, dict[int, str]]:
    """Epoch seconds for every stamp: one conversion when all are numbers, else one by one."""
    try:
        arr = np.array(stamps)
        if arr.dtype.kind in "fiu" and arr.ndim == 1 and np.isfinite(arr).all():
            return arr.astype(np.float64), {}
    except (ValueError, TypeError):
        pass  # ragged values: sorted out one by one below
    out = np.zeros(len(stamps), dtype=np.float64)
    bad: dict[int, str] = {}
    for r, stamp in enumerate(stamps):
        try:
            out[r] = parse_timestamp(stamp)
        except (ValueError, TypeError) as exc:
            bad[r] = str(exc)
    return out, bad


def _reject(rec: RecordLike, reason: str, index: int | None = None) -> Rejected:
    return Rejected(rec.topic, rec.partition, rec.offset, rec.key, rec.value, reason, index)
