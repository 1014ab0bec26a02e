import math

import orjson
import pytest
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from streamae.core.messages import ReadingMessage
from streamae.serving.decode import ReadingDecoder, parse_timestamp

FEATURES = ["a", "b"]


def rec(value, offset=0, key=b"k1"):
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return ConsumerRecord(
        topic="in",
        partition=0,
        leader_epoch=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=raw,
        headers=[],
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(raw),
        serialized_header_size=-1,
    )


def decode(*records):
    return ReadingDecoder(FEATURES).decode(list(records), "in", 0)


def test_single_and_list_messages_keep_order_and_offsets():
    r, bad = decode(
        rec({"key": "x", "ts": 10, "values": {"a": 1, "b": 2.5, "extra": 9}}, offset=5),
        rec(
            [
                {"ts": "2026-01-01T00:00:00Z", "values": {"a": 3, "b": 4}},
                {"key": "y", "ts": 20.5, "values": {"a": 5, "b": 6}},
            ],
            offset=6,
        ),
    )
    assert bad == []
    assert r.keys.tolist() == ["x", "k1", "y"]  # missing key falls back to the record key
    assert r.ts.tolist() == [10.0, 1_767_225_600.0, 20.5]
    assert r.values.tolist() == [[1, 2.5], [3, 4], [5, 6]]
    assert r.offsets.tolist() == [5, 6, 6]


def _library_text(fn, *args) -> str:
    """The error text another library (orjson, datetime) gives for ``args``: the decoder passes
    it on, and its wording is theirs to change."""
    try:
        fn(*args)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"{fn.__name__}{args} did not fail")


@pytest.mark.parametrize(
    "value,reasons",
    [
        (b"{nope", ["invalid JSON: " + _library_text(orjson.loads, b"{nope")]),
        ({"ts": 1, "values": {"a": 1}}, ["missing field 'b'"]),
        ({"ts": 1}, ["missing field 'values'"]),
        ({"values": {"a": 1, "b": 2}}, ["missing field 'ts'"]),
        ({"ts": "yesterday", "values": {"a": 1, "b": 2}}, [_library_text(parse_timestamp, "yesterday")]),
        (
            {"ts": True, "values": {"a": 1, "b": 2}},
            ["timestamp must be a number or an ISO 8601 string, not a boolean"],
        ),
        ({"ts": 1, "values": {"a": "1.0", "b": 2}}, ["value of 'a' is not a number: '1.0'"]),
        ({"ts": 1, "values": {"a": None, "b": 2}}, ["value of 'a' is not a number: None"]),
        ({"ts": 1, "values": {"a": 1, "b": 1e300}}, ["value of 'b' is not finite (or overflows float32)"]),
        ({"key": 7, "ts": 1, "values": {"a": 1, "b": 2}}, ["'key' must be a string, got int"]),
        ([1, 2], ["a reading must be a JSON object, got int"] * 2),  # one per list item
        ([], ["empty list: no readings"]),
        ({"ts": 1, "values": [1, 2]}, ["'values' must be an object of numbers, got list"]),
        (
            b'{"ts": 1, "values": {"a": 1e400, "b": 2}}',
            ["invalid JSON: " + _library_text(orjson.loads, b'{"ts": 1, "values": {"a": 1e400, "b": 2}}')],
        ),
        ({"ts": 1, "values": {"a": [1], "b": 2}}, ["value of 'a' is not a number: [1]"]),
    ],
)
def test_bad_records_are_rejected_with_reason_and_good_ones_survive(value, reasons):
    good = {"key": "g", "ts": 1, "values": {"a": 1, "b": 2}}
    r, bad = decode(rec(good, 1), rec(value, 2), rec(good, 3))
    assert r.offsets.tolist() == [1, 3]
    assert [b.offset for b in bad] == [2] * len(reasons)
    assert [b.reason for b in bad] == reasons
    listed = isinstance(value, list) and len(value) > 0
    assert [b.index for b in bad] == (list(range(len(reasons))) if listed else [None] * len(reasons))


def test_one_bad_reading_in_a_list_rejects_only_that_reading():
    r, bad = decode(rec([{"ts": 1, "values": {"a": 1, "b": 2}}, {"ts": 2, "values": {"a": "x", "b": 2}}]))
    assert len(r) == 1 and len(bad) == 1 and bad[0].index == 1


def test_no_key_anywhere_is_rejected():
    _, bad = decode(rec({"ts": 1, "values": {"a": 1, "b": 2}}, key=None))
    assert [b.reason for b in bad] == ["no 'key' field and no record key"]


def test_decoder_agrees_with_the_published_schema():
    cases = [
        {"key": "x", "ts": 1, "values": {"a": 1, "b": 2}},
        {"key": "x", "ts": "2026-01-01T00:00:00+02:00", "values": {"a": 1, "b": 2}},
        [{"key": "x", "ts": 1, "values": {"a": 1, "b": 2}}],
        {"key": "x", "ts": 1, "values": {"a": [1], "b": 2}},  # text too is per bundle: its field kinds
        {"key": "x", "values": {"a": 1, "b": 2}},
        {"key": "x", "ts": 1, "vals": {"a": 1, "b": 2}},
    ]
    for case in cases:
        try:
            ReadingMessage.validate_python(case)
            schema_ok = True
        except ValidationError:
            schema_ok = False
        _, bad = decode(rec(case))
        assert schema_ok == (not bad), case


def test_parse_timestamp_forms():
    assert parse_timestamp(5) == 5.0
    assert parse_timestamp("1970-01-01T00:01:00") == 60.0  # naive means UTC
    assert parse_timestamp("1970-01-01T01:00:00+01:00") == 0.0
    with pytest.raises(ValueError):
        parse_timestamp(math.inf)


def test_a_ragged_timestamp_beside_numeric_ones_is_rejected_alone():
    r, bad = decode(
        rec({"key": "g", "ts": 1, "values": {"a": 1, "b": 2}}, 1),
        rec({"key": "g", "ts": [1, 2], "values": {"a": 1, "b": 2}}, 2),
        rec({"key": "g", "ts": 3, "values": {"a": 1, "b": 2}}, 3),
    )
    assert r.offsets.tolist() == [1, 3] and r.ts.tolist() == [1.0, 3.0]
    assert [b.offset for b in bad] == [2]


def test_non_utf8_and_deeply_nested_payloads_are_rejected_not_raised():
    payloads = [b"\xff\xfe\x00", b"[" * 100_000 + b"]" * 100_000]
    _, bad = decode(*(rec(p, offset=i) for i, p in enumerate(payloads)))
    assert [(b.offset, b.reason) for b in bad] == [
        (i, "invalid JSON: " + _library_text(orjson.loads, p)) for i, p in enumerate(payloads)
    ]
