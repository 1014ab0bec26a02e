"""10,000 random and mutated records against the real broker, in each delivery mode and on
each client library: the daemon stays up and every reading of every record ends in a scored
window or in the dead-letter topic, none silently lost, none twice.

After the fuzzed records, a tail of clean readings goes to every (partition, key) the fuzzed
records could have opened, so no reading is left held for a window that never completes:
each one must be accounted for by the outputs alone.
"""

from __future__ import annotations

import collections
import json
import random
import time
import zlib
from typing import Any

import orjson
import pytest
from helpers import DaemonThread, read_to_end, settings_for, wait_published_and_committed

from streamae.core.messages import DeadLetter, ScoreMessage
from streamae.serving.clients.admin import ensure_daemon_topics
from streamae.serving.clients.kafka_python import make_producer

pytestmark = pytest.mark.kafka

FEATURES = ["temperature", "pressure", "vibration", "flow", "power"]
WINDOW = 20
RECORDS = 10_000
KEYS = ["machine-01", "machine-02", "pump-7", "", "ключ-ü", "🔥", "a" * 256]


class Fuzzer:
    """Records for the input topic: clean readings of a few keys, and mutations of them."""

    def __init__(self, seed: int, now: float) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.clock = {k: now - 3 * 3600 for k in KEYS}
        self.previous: tuple[bytes | None, bytes | None] = (b"machine-01", b"{}")

    def reading(self, key: str) -> dict[str, Any]:
        self.clock[key] += self.rng.uniform(0.5, 1.5)
        values = {f: round(self.rng.gauss(50, 10), 3) for f in FEATURES}
        return {"key": key, "ts": self.clock[key], "values": values}

    def record(self) -> tuple[bytes | None, bytes | None, bool]:
        """(record key, value, clean): clean records hold one unmutated reading."""
        r = self.rng
        key = r.choice(KEYS)
        doc = self.reading(key)
        record_key: bytes | None = key.encode()
        if r.random() < 0.6:
            value: bytes | None = orjson.dumps(doc)
            self.previous = (record_key, value)
            return record_key, value, True
        kind = r.randrange(12)
        if kind == 0:  # random bytes, sometimes large
            value = r.randbytes(r.choice([0, 1, 7, 64, 300, 70_000]))
        elif kind == 1:  # a few bytes flipped
            raw = bytearray(orjson.dumps(doc))
            for _ in range(r.randint(1, 3)):
                raw[r.randrange(len(raw))] = r.randrange(256)
            value = bytes(raw)
        elif kind == 2:  # truncated
            raw = orjson.dumps(doc)
            value = raw[: r.randrange(len(raw))]
        elif kind == 3:  # a field dropped
            victim = r.choice(["key", "ts", "values", "feature"])
            if victim == "feature":
                del doc["values"][r.choice(FEATURES)]
            else:
                del doc[victim]
            if victim == "key" and r.random() < 0.3:
                record_key = None
            value = orjson.dumps(doc)
        elif kind == 4:  # a value of the wrong type
            odd = r.choice(["1.5", None, True, False, [1.0], {"v": 1}, 1e308, -1e39, 10**30])
            doc["values"][r.choice(FEATURES)] = odd
            value = json.dumps(doc).encode()  # orjson refuses integers beyond 64 bits
        elif kind == 5:  # NaN and infinities, as some encoders write them
            text = orjson.dumps(doc).decode()
            f = r.choice(FEATURES)
            value = text.replace(
                f'"{f}":', f'"{f}":{r.choice(["NaN", "Infinity", "-Infinity"])},"x":', 1
            ).encode()
        elif kind == 6:  # odd timestamps
            doc["ts"] = r.choice(
                [
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock[key])),
                    time.strftime("%Y-%m-%dT%H:%M:%S+02:00", time.gmtime(self.clock[key] + 7200)),
                    "soon",
                    -5,
                    1e15,  # milliseconds mistaken for seconds... times a thousand
                    self.now + 20 * 3600,  # ahead, but within a day: accepted
                    self.now + 3 * 86400,  # too far ahead
                    1e9,  # 2001: a silence of decades before the next reading
                    True,
                    None,
                ]
            )
            value = orjson.dumps(doc)
        elif kind == 7:  # odd keys
            doc["key"] = r.choice([7, None, ["k"], "x" * 257, "x" * r.randint(1000, 5000)])
            if doc["key"] is None and r.random() < 0.5:
                record_key = None
            value = orjson.dumps(doc)
        elif kind == 8:  # lists: empty, mixed, nested
            items: list[Any] = [self.reading(r.choice(KEYS)) for _ in range(r.randint(0, 5))]
            if items and r.random() < 0.5:
                items[r.randrange(len(items))]["values"] = "broken"
            if r.random() < 0.2:
                items.append([doc])
            value = orjson.dumps(items)
        elif kind == 9:  # the previous record again, or this one out of order
            if r.random() < 0.5:
                record_key, value = self.previous
            else:
                doc["ts"] -= r.uniform(10, 600)
                value = orjson.dumps(doc)
        elif kind == 10:  # valid JSON that is no reading
            value = r.choice([b"null", b"1", b'"text"', b"{}", b"[[[[[[[[[[[[[1]]]]]]]]]]]]]", b"true"])
        else:  # a tombstone, or extra fields beside a good reading
            if r.random() < 0.5:
                value = None
            else:
                doc["values"]["unknown_sensor"] = 1.0
                doc["extra"] = {"nested": [1, 2]}
                value = orjson.dumps(doc)
        return record_key, value, False


def readings_of(record_key: bytes | None, value: bytes | None) -> tuple[list[str | None], bool]:
    """The key each reading of a record would be windowed under (None where the reading
    cannot be one), and whether the record is a list; the daemon's verdict is what the test
    checks, this only says where to look for it."""
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return [None], False
    many = isinstance(doc, list)
    keys: list[str | None] = []
    for item in (doc if many else [doc]) or [None]:
        key = item.get("key") if isinstance(item, dict) else None
        if key is None and isinstance(item, dict) and record_key is not None:
            key = record_key.decode("utf-8", "replace")
        keys.append(key if isinstance(key, str) and len(key) <= 256 else None)
    return keys, many


def produce(
    k: Any, fuzz: Fuzzer
) -> tuple[dict[tuple[int, int], tuple[bytes | None, bytes | None, bool]], set]:
    """The fuzzed records by (partition, offset), sent while the daemon runs, then a tail of
    WINDOW clean readings on every (partition, key) a fuzzed reading could have opened;
    returns the records and the tail's places."""
    producer = make_producer(k)
    try:
        futures = []
        for i in range(RECORDS):
            rkey, value, clean = fuzz.record()
            futures.append((rkey, value, clean, producer.send(k.input_topic, key=rkey, value=value)))
            if i % 50 == 49:  # in bursts, so commits fall between a key's readings
                producer.flush()
                time.sleep(0.05)
        producer.flush()
        records = {}
        for rkey, value, clean, f in futures:
            meta = f.get()
            records[(meta.partition, meta.offset)] = (rkey, value, clean)
        opened = {
            (p, key)
            for (p, _), (rk, v, _) in records.items()
            for key in readings_of(rk, v)[0]
            if key is not None
        }
        tail_ts, tail = time.time() + 3600, []
        for p, key in sorted(opened):
            for j in range(WINDOW):
                value = orjson.dumps({"key": key, "ts": tail_ts + j, "values": dict.fromkeys(FEATURES, 50.0)})
                tail.append((value, producer.send(k.input_topic, key=b"tail", value=value, partition=p)))
        producer.flush()
        places = set()
        for value, f in tail:
            meta = f.get()
            records[(meta.partition, meta.offset)] = (b"tail", value, True)
            places.add((meta.partition, meta.offset))
        return records, places
    finally:
        producer.close()


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_fuzzed_records_are_each_scored_or_dead_lettered_and_the_daemon_stays_up(
    kafka_bootstrap, topics, bundle_dir, backend, delivery, record_property
):
    # commits every 100 ms: they pass readings still held for a window mid-stream
    s = settings_for(
        kafka_bootstrap, topics, backend, kafka={"delivery": delivery, "commit_interval_ms": 100}
    )
    k = s.kafka
    ensure_daemon_topics(k)
    fuzz = Fuzzer(seed=zlib.crc32(f"{backend}/{delivery}".encode()), now=time.time())
    with DaemonThread(s, bundle_dir, create_topics=False) as d:
        records, tail = produce(k, fuzz)
        wait_published_and_committed(k)
        assert d.thread.is_alive()
    isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
    scores = read_to_end(k, k.scores_topic, isolation_level=isolation)
    dead = read_to_end(k, k.dlq_topic, isolation_level=isolation)
    for doc in scores:
        ScoreMessage.model_validate(doc)
    for doc in dead:
        DeadLetter.model_validate(doc)

    letters = collections.Counter((x["partition"], x["offset"], x["index"]) for x in dead)
    # the readings no dead letter names, per (partition, key): one offset per reading
    alive: dict[tuple[int, str], list[int]] = collections.defaultdict(list)
    for (p, o), (rkey, value, _) in sorted(records.items()):
        keys, many = readings_of(rkey, value)
        for i, key in enumerate(keys):
            if key is not None and not letters[(p, o, i if many else None)]:
                alive[(p, key)].append(o)
    # a list record can hold several readings of one key: offsets alone do not name a window
    windows = collections.Counter(
        (
            w["source"]["partition"],
            w["key"],
            w["source"]["offset_start"],
            w["source"]["offset_end"],
            w["window_end"],
        )
        for w in scores
    )
    duplicated = sum(n - 1 for n in windows.values())
    spans: dict[tuple[int, str], list[tuple[int, int]]] = collections.defaultdict(list)
    for p, key, lo, hi, _ in windows:
        spans[(p, key)].append((lo, hi))
    lost = [
        (p, key, o)
        for (p, key), offsets in alive.items()
        for o in offsets
        if (p, o) not in tail and not any(lo <= o <= hi for lo, hi in spans[(p, key)])
    ]
    silently_skipped = []  # a window spanning more readings than it holds skipped one
    for (p, key), ranges in spans.items():
        held = collections.Counter(alive[(p, key)])
        for lo, hi in ranges:
            inside = sum(n for o, n in held.items() if lo <= o <= hi)
            if inside != WINDOW and held[lo] == 1 and held[hi] == 1:
                silently_skipped.append((p, key, lo, hi, inside))

    clean_dead = [x for x in dead if records.get((x["partition"], x["offset"]), (0, 0, False))[2]]
    codes = collections.Counter(x["reason_code"] for x in dead)
    summary = {
        "backend": backend,
        "delivery": delivery,
        "records": RECORDS,
        "tail": len(tail),
        "windows": len(windows),
        "score_messages": len(scores),
        "dead_letters": len(dead),
        "lost": len(lost),
        "duplicated": duplicated,
        "codes": dict(codes),
    }
    record_property("fuzz", summary)
    print(f"fuzz: {summary}")
    assert not lost, lost[:10]
    assert not silently_skipped, silently_skipped[:5]
    assert duplicated == 0
    assert sum(letters.values()) == len(dead) == len(letters), "a reading dead-lettered twice"
    # a clean reading can only be cut off by its key's silence, never rejected
    assert {x["reason_code"] for x in clean_dead} <= {"window_abandoned"}, clean_dead[:3]
    assert not any((x["partition"], x["offset"]) in tail for x in dead)
    assert len(codes) >= 8, codes  # the fuzzer reached most of the policy
