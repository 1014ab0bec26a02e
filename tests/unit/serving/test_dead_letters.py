"""Dead letters: a machine-readable reason code for every kind of bad input, and a record
that stays within the size limit after JSON escaping, whatever the input."""

from __future__ import annotations

from typing import get_args

import jsonschema
import orjson
import pytest

from streamae.core.messages import ReasonCode, json_schema
from streamae.serving.dead_letters import REASON_CODES, Rejected, dead_letter, record_bytes
from streamae.serving.decode import ReadingDecoder
from streamae.serving.transport import Record

FEATURES = ["a", "b"]
GOOD = {"key": "k", "ts": 1_700_000_000, "values": {"a": 1.0, "b": 2.0}}


def test_the_codes_are_the_contracts():
    assert set(REASON_CODES) == set(get_args(ReasonCode))


@pytest.mark.parametrize(
    "value,code",
    [
        (b"{oops", "invalid_json"),
        (b"[]", "empty_list"),
        (b"[1]", "not_an_object"),
        (orjson.dumps({**GOOD, "values": [1, 2]}), "not_an_object"),
        (orjson.dumps({"key": "k", "ts": 1, "values": {"a": 1.0}}), "missing_field"),
        (orjson.dumps({"key": "k", "values": GOOD["values"]}), "missing_field"),
        (orjson.dumps({**GOOD, "values": {"a": True, "b": 1.0}}), "not_a_number"),
        (orjson.dumps({**GOOD, "values": {"a": "1", "b": 1.0}}), "not_a_number"),
        (orjson.dumps({**GOOD, "values": {"a": 1e300, "b": 1.0}}), "not_a_number"),
        (orjson.dumps({**GOOD, "key": 7}), "invalid_key"),
        (orjson.dumps({**GOOD, "key": "k" * 257}), "key_too_long"),
        (orjson.dumps({**GOOD, "ts": "soon"}), "invalid_timestamp"),
        (orjson.dumps({**GOOD, "ts": True}), "invalid_timestamp"),
        (orjson.dumps({**GOOD, "ts": -5}), "timestamp_out_of_range"),
        (orjson.dumps({**GOOD, "ts": 1e15}), "timestamp_out_of_range"),
    ],
)
def test_each_kind_of_bad_reading_has_its_code_whatever_its_neighbours(value, code):
    decoder = ReadingDecoder(FEATURES)
    good = [Record("in", 0, i, b"k", orjson.dumps({**GOOD, "ts": GOOD["ts"] + i})) for i in range(20)]
    for records in ([Record("in", 0, 99, None, value)], [*good, Record("in", 0, 99, None, value)]):
        readings, rejected = decoder.decode(records, "in", 0)
        assert [r.code for r in rejected] == [code] and len(readings) == len(records) - 1


def test_the_issues_poison_record_makes_a_bounded_dead_letter():
    """A 700,000-byte key and 340,000 bytes of \\x01 (six bytes each once escaped)."""
    r = Rejected("in", 3, 41, b"k" * 700_000, b"\x01" * 340_000, "invalid JSON: ...", code="invalid_json")
    for limit in (921_600, 100_000, 16_384):
        key, value, headers = dead_letter(r, limit)
        assert record_bytes(key, value, headers) <= limit
        doc = orjson.loads(value)
        jsonschema.validate(doc, json_schema("dead-letter"))
        assert doc["truncated"] and doc["value_bytes"] == 340_000 and set(doc["value"]) == {"\x01"}
        assert key == b"k" * 1024 and doc["key"] == "k" * 1000
        assert dict(headers)["streamae.reason_code"] == b"invalid_json"
    key, value, _ = dead_letter(r, 921_600)
    assert len(orjson.loads(value)["value"]) == 64 * 1024  # the first 64 KiB, when they fit


def test_a_small_record_is_kept_whole_and_not_marked_truncated():
    key, value, _ = dead_letter(
        Rejected("in", 0, 5, None, b"{oops", "invalid JSON", code="invalid_json"), 921_600
    )
    doc = orjson.loads(value)
    assert (key, doc["value"], doc["value_bytes"], doc["truncated"], doc["key"]) == (
        None,
        "{oops",
        5,
        False,
        None,
    )
