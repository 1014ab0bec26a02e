"""Dead letters: what cannot be scored or published, with a reason, bounded in size.

A dead letter (``messages.DeadLetter``) names the reason twice: ``reason`` for people and
``reason_code`` for machines (one of :data:`REASON_CODES`; also the ``streamae.reason_code``
header, so a metric or a filter needs no JSON parsing). It carries the start of the
original bytes, cut so that the whole record (value, key and headers, after JSON
escaping, which can make a byte six) stays within ``STREAMAE_OUTPUT__MAX_MESSAGE_BYTES``:
a poison record can never make its own dead letter too large to publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from streamae.serving.transport import Header

#: At most this much of the original value is kept (before escaping).
DEAD_LETTER_VALUE_BYTES = 64 * 1024
REASON_CHARS = 1000  # also the key's characters in the document
KEY_BYTES = 1024  # the dead letter's record key: the original's, cut
HEADER_BYTES = 512
#: Kafka's per-record framing (lengths, timestamp delta, attributes), with room to spare.
RECORD_OVERHEAD = 256


@dataclass(frozen=True)
class Rejected:
    """A record (or one reading of a list message) that cannot be scored, and why: ``reason``
    for people, ``code`` for machines (one of :data:`REASON_CODES`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    index: int | None = None
    code: str = "invalid_reading"


#: Every dead letter's ``reason_code`` (docs/messages.md lists them with their meaning).
REASON_CODES = (
    "invalid_json",  # the value is not JSON (or not UTF-8)
    "empty_list",  # a JSON list with no reading
    "not_an_object",  # a reading, or its 'values', is not a JSON object
    "missing_field",  # 'ts', 'values' or a feature is absent
    "not_a_number",  # a feature's value is not a finite number (booleans included)
    "invalid_key",  # 'key' is not a string, or absent with no record key
    "key_too_long",  # 'key' longer than the limit
    "invalid_timestamp",  # 'ts' is neither epoch seconds nor ISO 8601
    "timestamp_out_of_range",  # 'ts' before 1970 or too far ahead of the clock
    "window_abandoned",  # its key fell silent (idle TTL) before the reading's window completed
    "output_too_large",  # an output larger than the limit or the topic's max.message.bytes
    "output_rejected",  # an output the broker refused for good for another reason
    "invalid_reading",  # anything else about a reading
)


def record_bytes(key: bytes | None, value: bytes | None, headers: Sequence[Header] = ()) -> int:
    """What a record weighs against a size limit: value, key and headers, framing included."""
    return (
        RECORD_OVERHEAD + len(key or b"") + len(value or b"") + sum(len(name) + len(v) for name, v in headers)
    )


def dead_letter(r: Rejected, max_bytes: int) -> tuple[bytes | None, bytes, tuple[Header, ...]]:
    """The record key, value and headers of ``r``'s dead letter, weighing at most ``max_bytes``."""
    key = r.key[:KEY_BYTES] if r.key is not None else None
    reason = r.reason[:REASON_CHARS]
    headers = (
        ("streamae.reason", reason.encode()[:HEADER_BYTES]),
        ("streamae.reason_code", r.code.encode()[:HEADER_BYTES]),
    )
    raw = r.value or b""
    doc = {
        "reason": reason,
        "reason_code": r.code,
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "index": r.index,
        "key": r.key[:REASON_CHARS].decode("utf-8", "replace") if r.key is not None else None,
        "value": "",
        "value_bytes": len(raw),
        "truncated": bool(raw),
    }
    room = max_bytes - record_bytes(key, orjson.dumps(doc), headers)
    text, kept = _fit(raw[:DEAD_LETTER_VALUE_BYTES], room)
    doc["value"], doc["truncated"] = text, kept < len(raw)
    return key, orjson.dumps(doc), headers


def _fit(prefix: bytes, room: int) -> tuple[str, int]:
    """The longest start of ``prefix`` whose JSON string (escaped, UTF-8) takes at most
    ``room`` bytes, as text, and how many bytes of ``prefix`` it holds."""
    n = len(prefix)
    while n > 0:
        text = prefix[:n].decode("utf-8", "replace")
        size = len(orjson.dumps(text)) - 2  # without the quotes
        if size <= room:
            return text, n
        # escaping is uneven (\x01 takes 6 bytes, 'a' one): shrink in proportion, then by one
        n = max(0, min(n - 1, n * room // size))
    return "", 0


def undeliverable(
    source_topic: str,
    source_partition: int,
    offset: int,
    topic: str,
    key: bytes | None,
    value: bytes,
    why: str,
    code: str,
) -> Rejected:
    """An output that cannot be published (too large, refused by its topic), as a dead letter
    of the input record it came from; its value is the output itself."""
    return Rejected(
        source_topic, source_partition, offset, key, value, f"output to '{topic}' {why}", None, code
    )
