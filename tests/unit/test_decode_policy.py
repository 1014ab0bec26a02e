"""Decode policy: every reading is judged on its own, whatever else is in its batch."""

from __future__ import annotations

import json
import random

import numpy as np
import orjson
from kafka.consumer.fetcher import ConsumerRecord

from streamae.serving import conversion
from streamae.serving.decode import MAX_KEY_CHARS, ReadingDecoder

FEATURES = ["a", "b", "c"]
NOW = 1_767_225_600.0


def rec(value, offset: int = 0, key: bytes | None = b"k1") -> ConsumerRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()  # big ints too
    return ConsumerRecord("in", 0, 0, offset, 0, 0, key, raw, [], None, len(key or b""), len(raw), -1)


def decoder() -> ReadingDecoder:
    return ReadingDecoder(FEATURES, clock=lambda: NOW)


def good(i: int) -> dict:
    return {"key": f"k{i % 7}", "ts": NOW - 1000 + i, "values": {"a": i, "b": 0.5 * i, "c": -i}}


ODD_VALUES = [True, False, None, "1.5", [1], {"x": 1}, 1e300, 10**40, -0.0, 3]
ODD_STAMPS = [True, "2026-01-01T00:00:00Z", "yesterday", -5, NOW + 2 * 86400, 1e15, None, [1], NOW]
ODD_KEYS = ["x" * MAX_KEY_CHARS, "x" * (MAX_KEY_CHARS + 1), 7, None, ""]


def mutate(doc: dict, rng: random.Random) -> dict | list | bytes:
    doc = orjson.loads(orjson.dumps(doc))
    kind = rng.randrange(6)
    if kind == 0:
        doc["values"][rng.choice(FEATURES)] = rng.choice(ODD_VALUES)
    elif kind == 1:
        doc["ts"] = rng.choice(ODD_STAMPS)
    elif kind == 2:
        doc["key"] = rng.choice(ODD_KEYS)
    elif kind == 3:
        del doc[rng.choice(["ts", "values"])]
    elif kind == 4:
        return [doc, good(rng.randrange(100))]
    else:
        return orjson.dumps(doc)[: rng.randrange(40)]
    return doc


def outcome(readings, rejected) -> tuple[list, list]:
    kept = list(
        zip(readings.offsets.tolist(), readings.keys.tolist(), readings.ts.tolist(), readings.values.tolist())
    )
    return kept, sorted((r.offset, r.index, r.reason) for r in rejected)


def test_a_batch_decodes_exactly_as_its_records_one_by_one():
    rng = random.Random(5)
    records = [rec(mutate(good(i), rng) if rng.random() < 0.3 else good(i), offset=i) for i in range(600)]
    d = decoder()
    together = outcome(*d.decode(records, "in", 0))
    alone = [outcome(*d.decode([r], "in", 0)) for r in records]
    assert together[0] == [row for kept, _ in alone for row in kept]
    assert together[1] == sorted(bad for _, rejected in alone for bad in rejected)
    assert len(together[0]) + len({o for o, _, _ in together[1]}) >= len(records)


def test_booleans_are_never_numbers_whatever_their_neighbours():
    boolean = {"key": "k", "ts": NOW, "values": {"a": True, "b": 1, "c": 2}}
    bad_neighbour = {"key": "k", "ts": NOW, "values": {"a": "x", "b": 1, "c": 2}}
    for batch in ([boolean], [good(1), boolean, good(2)], [bad_neighbour, boolean]):
        readings, rejected = decoder().decode([rec(d, i) for i, d in enumerate(batch)])
        reasons = {r.offset: r.reason for r in rejected}
        assert reasons[batch.index(boolean)] == "value of 'a' is a boolean, not a number"
        assert len(readings) == sum(d is not boolean and d is not bad_neighbour for d in batch)


def test_a_key_containing_true_is_not_mistaken_for_a_boolean():
    readings, rejected = decoder().decode(
        [rec({"key": "true-false", "ts": NOW, "values": {"a": 1, "b": 2, "c": 3}})]
    )
    assert rejected == [] and readings.keys.tolist() == ["true-false"]


def test_timestamps_out_of_range_are_dead_lettered_with_the_limit():
    stamps = [NOW + 86_400 - 1, NOW + 86_400 + 1, 1e15, -1.0, 0.0]
    readings, rejected = decoder().decode(
        [rec({"key": "k", "ts": t, "values": {"a": 1, "b": 2, "c": 3}}, i) for i, t in enumerate(stamps)]
    )
    assert readings.offsets.tolist() == [0, 4]
    reasons = {r.offset: r.reason for r in rejected}
    assert reasons[1] == f"timestamp {stamps[1]:.10g} is more than 86400 s ahead of this host's clock"
    assert reasons[2].startswith("timestamp 1e+15 is more than 86400 s ahead")
    assert reasons[3] == "timestamp -1 is before 1970"


def test_keys_longer_than_the_limit_are_dead_lettered():
    ok, long = "k" * MAX_KEY_CHARS, "k" * (MAX_KEY_CHARS + 1)
    readings, rejected = decoder().decode(
        [rec({"key": k, "ts": NOW, "values": {"a": 1, "b": 2, "c": 3}}, i) for i, k in enumerate([ok, long])]
        + [rec({"ts": NOW, "values": {"a": 1, "b": 2, "c": 3}}, 2, key=long.encode())]
    )
    assert readings.keys.tolist() == [ok]
    assert [(r.offset, r.reason) for r in rejected] == [
        (1, f"key is {MAX_KEY_CHARS + 1} characters long; the limit is {MAX_KEY_CHARS}"),
        (2, f"key is {MAX_KEY_CHARS + 1} characters long; the limit is {MAX_KEY_CHARS}"),
    ]


def test_one_odd_record_costs_a_few_vectorised_calls_not_a_per_row_pass():
    items = [float(i) for i in range(4096)]
    items[1234] = "odd"
    calls = {"fast": 0, "slow": 0}

    def fast(run):
        calls["fast"] += 1
        return conversion.numeric_stamps(run)

    def slow(item):
        calls["slow"] += 1
        return float(item)

    out = np.zeros(len(items))
    bad = conversion.convert(items, out, fast, slow)
    assert list(bad) == [1234]
    assert calls["slow"] <= conversion._SLOW_RUN
    assert calls["fast"] <= 2 * int(np.log2(len(items))) + 1
    assert out[1233] == 1233.0 and out[1235] == 1235.0
