"""Decode Kafka records into columnar :class:`Readings`; bad records become dead letters.

This is the hot path of the daemon (JSON parsing costs more than the model), so it
uses orjson, touches each reading once and leaves numeric checks to one numpy pass.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import orjson

from streamae.core.categories import message_codes
from streamae.core.readings import Readings, parse_timestamp
from streamae.serving.conversion import convert, numeric_rows, numeric_stamps
from streamae.serving.dead_letters import Rejected
from streamae.serving.health.metrics import UNSEEN


class RecordLike(Protocol):
    """What decoding needs of a consumed record (``transport.Record``, or any client's)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class _Invalid(ValueError):
    """A reading that cannot be used, with the dead letter's reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


#: Longest entity key accepted: a key travels in every score and alert of its windows, so an
#: unbounded one would make every output of that key too large for the broker.
MAX_KEY_CHARS = 256
#: How far ahead of this host's clock an event time may be; further is a broken clock or a unit
#: error (ms for s), and would otherwise look like a long silence to the key's windows.
MAX_FUTURE_S = 86_400.0


class ReadingDecoder:
    """Decodes reading messages for a fixed, ordered feature list (the bundle's).

    Each reading is judged on its own (never by what else is in its batch): a JSON object
    with a string ``key`` (or a record key) of at most ``max_key_chars`` characters, a
    number or ISO 8601 ``ts`` no more than ``max_future_s`` ahead of ``clock()`` and not
    before 1970, and a finite number (not a boolean) for every feature.
    """

    def __init__(
        self,
        features: Sequence[str],
        max_key_chars: int = MAX_KEY_CHARS,
        max_future_s: float = MAX_FUTURE_S,
        clock: Callable[[], float] = time.time,
        categories: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.features = tuple(features)
        categories = categories or {}
        self.numeric = tuple(f for f in self.features if f not in categories)
        # categorical inputs are read apart from the numbers and coded a column at a time
        self.categorical = tuple(f for f in self.features if f in categories)
        self._vocab = {f: list(categories[f]) for f in self.categorical}
        self._at = (
            [j for j, f in enumerate(self.features) if f not in categories],
            [j for j, f in enumerate(self.features) if f in categories],
        )
        self.unseen: dict[str, int] = dict.fromkeys(self.categorical, 0)
        self.max_key_chars = max_key_chars
        self.max_future_s = max_future_s
        self.clock = clock
        self._row, self._cats = _getter(self.numeric), _getter(self.categorical)

    def decode(
        self, records: Sequence[RecordLike], topic: str = "", partition: int = 0
    ) -> tuple[Readings, list[Rejected]]:
        """Decode records of one partition, in order."""
        keys: list[str] = []
        stamps: list[Any] = []
        rows: list[tuple[Any, ...]] = []
        cats: list[tuple[Any, ...]] = []
        offsets: list[int] = []
        origins: list[tuple[RecordLike, int | None]] = []
        rejected: list[Rejected] = []
        lists = False  # some record held a list: readings carry their index in it
        for rec in records:
            try:
                doc = orjson.loads(rec.value) if rec.value is not None else None
            except orjson.JSONDecodeError as exc:
                rejected.append(_reject(rec, f"invalid JSON: {exc}", code="invalid_json"))
                continue
            items, many = (doc, True) if type(doc) is list else ((doc,), False)
            lists |= many
            if many and not items:
                rejected.append(_reject(rec, "empty list: no readings", code="empty_list"))
                continue
            # booleans are JSON's, not numbers, but numpy reads them as 0/1: records that may
            # hold one (a C-speed byte search) have their values checked one by one
            maybe_bool = rec.value is not None and (b"true" in rec.value or b"false" in rec.value)
            for i, item in enumerate(items):
                try:
                    key, stamp, row, cat = self._reading(item, rec, maybe_bool)
                except (KeyError, ValueError, TypeError) as exc:  # ours (_Invalid) carry a code
                    rejected.append(_rejected_reading(rec, exc, i if many else None))
                    continue
                keys.append(key)
                stamps.append(stamp)
                rows.append(row)
                cats.append(cat)
                offsets.append(rec.offset)
                origins.append((rec, i if many else None))

        return self._columns(keys, stamps, (rows, cats), offsets, origins, lists, topic, partition, rejected)

    def _columns(
        self,
        keys: list[str],
        stamps: list[Any],
        raw: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]],
        offsets: list[int],
        origins: list[tuple[RecordLike, int | None]],
        lists: bool,
        topic: str,
        partition: int,
        rejected: list[Rejected],
    ) -> tuple[Readings, list[Rejected]]:
        """The readings as columns, in one numpy conversion; those whose values or time do
        not convert join ``rejected``."""
        if not keys:
            return Readings.empty(len(self.features), topic, partition), rejected
        values = np.empty((len(keys), len(self.features)), dtype=np.float32)
        values[:, self._at[0]], bad = self._to_matrix(raw[0])
        values[:, self._at[1]], unseen, bad_cat = self._codes(raw[1])
        ts, bad_ts = self._to_timestamps(stamps)
        for more in (bad_cat, bad_ts):
            bad.update((r, reason) for r, reason in more.items() if r not in bad)
        good = np.ones(len(keys), dtype=bool)
        for r, (code, reason) in sorted(bad.items()):
            good[r] = False
            rec, index = origins[r]
            rejected.append(_reject(rec, reason, index, code))
        self._count_unseen(unseen[good])
        readings = Readings(
            keys=np.array(keys, dtype=object)[good],
            ts=ts[good],
            values=values[good],
            offsets=np.array(offsets, dtype=np.int64)[good],
            topic=topic,
            partition=partition,
            index=np.array([-1 if i is None else i for _, i in origins], np.int32)[good] if lists else None,
        )
        return readings, rejected

    def _reading(
        self, item: Any, rec: RecordLike, maybe_bool: bool
    ) -> tuple[str, Any, tuple[Any, ...], tuple[Any, ...]]:
        """Key, raw timestamp, raw numeric and raw categorical values of one reading; raises on
        a bad one."""
        if type(item) is not dict:
            raise _Invalid("not_an_object", f"a reading must be a JSON object, got {type(item).__name__}")
        values = item["values"]
        if type(values) is not dict:
            raise _Invalid(
                "not_an_object", f"'values' must be an object of numbers, got {type(values).__name__}"
            )
        row = self._row(values)
        if maybe_bool:
            for f, v in zip(self.numeric, row):
                if v is True or v is False:
                    raise _Invalid("not_a_number", f"value of '{f}' is a boolean, not a number")
        stamp = item["ts"]
        if stamp is True or stamp is False:
            raise _Invalid(
                "invalid_timestamp", "timestamp must be a number or an ISO 8601 string, not a boolean"
            )
        key = item.get("key")
        if type(key) is not str:
            key = self._fallback_key(key, rec)
        if len(key) > self.max_key_chars:
            raise _Invalid(
                "key_too_long", f"key is {len(key)} characters long; the limit is {self.max_key_chars}"
            )
        return key, stamp, row, self._cats(values)

    def _codes(
        self, cats: list[tuple[Any, ...]]
    ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, str]]]:
        """Codes ``(n, C)`` of the categorical values, which of them are unseen, and the rows
        with a value that is not text, a boolean or null, or text over the size limit."""
        n = len(cats)
        out = np.zeros((n, len(self.categorical)), dtype=np.float32)
        unseen = np.zeros((n, len(self.categorical)), dtype=bool)
        bad: dict[int, tuple[str, str]] = {}
        for j, (name, column) in enumerate(zip(self.categorical, zip(*cats))):
            out[:, j], unseen[:, j], refused = message_codes(column, self._vocab[name], name)
            for r, why in refused.items():
                bad.setdefault(r, ("not_a_category", why))
        return out, unseen, bad

    def _count_unseen(self, unseen: np.ndarray) -> None:
        for name, n in zip(self.categorical, unseen.sum(axis=0).tolist()):
            if n:
                self.unseen[name] += n
                UNSEEN.labels(name).inc(n)

    @staticmethod
    def _fallback_key(key: Any, rec: RecordLike) -> str:
        if key is not None:
            raise _Invalid("invalid_key", f"'key' must be a string, got {type(key).__name__}")
        if rec.key is None:
            raise _Invalid("invalid_key", "no 'key' field and no record key")
        return rec.key.decode("utf-8", "replace")

    def _to_matrix(self, rows: list[tuple[Any, ...]]) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
        """Values ``(n, F)`` as float32, and the rows that are not all finite numbers
        (row → (reason code, reason))."""
        matrix = np.zeros((len(rows), len(self.numeric)), dtype=np.float32)
        bad = {
            r: ("not_a_number", why)
            for r, why in convert(rows, matrix, numeric_rows, self._row_values).items()
        }
        for r in np.flatnonzero(~np.isfinite(matrix).all(axis=1)).tolist():
            if r not in bad:
                f = self.numeric[int(np.flatnonzero(~np.isfinite(matrix[r]))[0])]
                bad[r] = ("not_a_number", f"value of '{f}' is not finite (or overflows float32)")
        return matrix, bad

    def _row_values(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        for f, v in zip(self.numeric, row):
            if type(v) not in (int, float):
                raise TypeError(f"value of '{f}' is not a number: {v!r}")
        return row

    def _to_timestamps(self, stamps: list[Any]) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
        """Epoch seconds for every stamp, and the stamps that are unreadable or out of range."""
        out = np.zeros(len(stamps), dtype=np.float64)
        parsed = convert(stamps, out, numeric_stamps, parse_timestamp)
        bad = {r: ("invalid_timestamp", why) for r, why in parsed.items()}
        latest = self.clock() + self.max_future_s
        for r in np.flatnonzero((out > latest) | (out < 0)).tolist():
            if r not in bad:
                bad[r] = (
                    "timestamp_out_of_range",
                    f"timestamp {out[r]:.10g} is before 1970"
                    if out[r] < 0
                    else f"timestamp {out[r]:.10g} is more than {self.max_future_s:g} s ahead of "
                    "this host's clock",
                )
        return out, bad


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The values of ``names`` in a reading's ``values``, as a tuple (KeyError if one is missing)."""
    if not names:
        return lambda _: ()
    getter = operator.itemgetter(*names)
    # itemgetter of one name returns a bare value; keep rows as tuples either way
    return getter if len(names) > 1 else (lambda v: (getter(v),))


def _rejected_reading(rec: RecordLike, exc: Exception, index: int | None) -> Rejected:
    if isinstance(exc, KeyError):
        return _reject(rec, f"missing field {exc}", index, "missing_field")
    return _reject(rec, str(exc), index, getattr(exc, "code", "invalid_reading"))


def _reject(
    rec: RecordLike, reason: str, index: int | None = None, code: str = "invalid_reading"
) -> Rejected:
    return Rejected(rec.topic, rec.partition, rec.offset, rec.key, rec.value, reason, index, code)
