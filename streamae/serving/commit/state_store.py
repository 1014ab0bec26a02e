"""The state store: each input partition's alert and smoothing state on the compacted state topic.

State of input partition ``p`` lives in partition ``p`` of ``STREAMAE_KAFKA__STATE_TOPIC``
(compacted, as many partitions as the input), keyed ``"<input topic>:<p>"``. It is written
(and acknowledged) just before each commit and read back by the partition's next owner,
which uses it only when it was saved with the commit it resumes from.

The record value is one JSON document (format 1)::

    {"format": 1,
     "scored_through": 1234,            # the commit it goes with (see checkpoint.py)
     "alerts": {key: {...}},            # AlertPolicy.snapshot()
     "smoothing": {key: 0.42},          # last EWMA score per key (bundles that smooth)
     "post": {"record": {key: ...}, ...}}  # core.postprocess per-key state (bundles that use it),
                                           # core.adapt's under "adapt" (normalising bundles):
                                           # StreamState.saved() / update() (core/stream_state.py)

Documents without ``format`` (written before it existed) are read as format 0: the same
fields; ``post`` may be absent (no post-processing state). A tombstone (no value) means no
state; a newer or unknown format, or a document that does not parse, means a fresh start
with a warning, never a crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from streamae.core.config import ConfigError, KafkaSettings
from streamae.serving.transport import Header, Partition, Transport, TransportTimeout

log = logging.getLogger(__name__)

FORMAT = 1
MAX_STATE_BYTES = 900 * 1024  # under the broker's default 1 MiB message limit
# how long a just-created topic may take to show its partitions before the check gives up
TOPIC_SETTLE_S = 10.0


@dataclass(frozen=True)
class SavedState:
    """The state of one input partition as of one commit."""

    scored_through: int
    alerts: dict[str, Any] = field(default_factory=dict)  # AlertPolicy.snapshot()
    smoothing: dict[str, float] = field(default_factory=dict)
    post: dict[str, dict[str, Any]] = field(default_factory=dict)  # core.postprocess state


def state_key(partition: Partition) -> bytes:
    return f"{partition.topic}:{partition.partition}".encode()


def encode(state: SavedState, where: object = "") -> bytes | None:
    """The record value of ``state``, or None when even its alerts alone are too large."""
    doc = {
        "format": FORMAT,
        "scored_through": state.scored_through,
        "alerts": state.alerts,
        "smoothing": state.smoothing,
        "post": state.post,
    }
    value = orjson.dumps(doc)
    if len(value) > MAX_STATE_BYTES and (state.smoothing or state.post):
        # per-key smoothing grows with the keys; alerts matter more, so they go alone
        log.warning("%s: smoothing state too large to save; saving alerts only", where)
        value = orjson.dumps({**doc, "smoothing": {}, "post": {}})
    if len(value) > MAX_STATE_BYTES:
        # too many keys mid-alert for one record: the next owner starts this partition's
        # alert policy fresh rather than the daemon failing every commit
        log.error("%s: alert state of %d bytes not saved", where, len(value))
        return None
    return value


def decode(value: bytes | None, where: object = "") -> SavedState | None:
    """The state in a record value; None for a tombstone or anything unreadable (logged)."""
    if value is None:
        return None
    try:
        doc = orjson.loads(value)
        version = doc.get("format", 0)  # unversioned documents are format 0: same fields
        if type(version) is not int or version not in (0, FORMAT):
            log.warning("%s: state format %r is not one this version reads; starting fresh", where, version)
            return None
        state = SavedState(
            int(doc["scored_through"]), doc["alerts"], doc.get("smoothing") or {}, doc.get("post") or {}
        )
        if not all(isinstance(x, dict) for x in (state.alerts, state.smoothing, state.post)):
            raise TypeError("'alerts', 'smoothing' and 'post' must be objects")
        return state
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        log.warning("%s: unreadable saved state (%r); starting fresh", where, exc)
        return None


class Sender(Protocol):
    """Where saved state goes out (the publisher, which waits for its acknowledgement)."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> None: ...


class StateStore:
    """Saves and loads the state of input partitions on the compacted state topic."""

    def __init__(self, transport: Transport, topic: str, timeout_s: float = 10.0) -> None:
        self.transport = transport
        self.topic = topic
        self.timeout_s = timeout_s

    def save(self, sender: Sender, partition: Partition, state: SavedState) -> None:
        """Send ``state`` of input ``partition`` (unless too large; see :func:`encode`)."""
        value = encode(state, partition)
        if value is not None:
            sender.send(self.topic, state_key(partition), value, partition=partition.partition)

    def load(self, partition: Partition, scored_through: int, strict: bool = False) -> SavedState | None:
        """The state saved with the commit that has ``scored_through``, or None. When the
        state topic cannot be read: :class:`TransportTimeout` if ``strict`` (the caller tries
        again later), else None (a fresh start, logged)."""
        try:
            last = self.transport.read_last(Partition(self.topic, partition.partition), self.timeout_s)
        except TransportTimeout as exc:
            if strict:
                raise
            log.warning("%s: alert state unreadable, starting fresh: %s", partition, exc)
            return None
        if last is None or last.key != state_key(partition):
            return None
        state = decode(last.value, partition)
        if state is None or state.scored_through != scored_through:
            # none saved yet, or saved by a commit that then failed: start fresh
            return None
        return state


def check_state_topic(transport: Transport, k: KafkaSettings, settle_s: float | None = None) -> None:
    """Raise :class:`ConfigError` unless the state topic has a partition per input partition."""
    settle_s = TOPIC_SETTLE_S if settle_s is None else settle_s
    # topics created a moment ago show up without partitions until they have leaders
    deadline = time.monotonic() + settle_s
    while True:
        state = transport.partitions_for_topic(k.state_topic)
        inputs = transport.partitions_for_topic(k.input_topic)
        if len(state) >= len(inputs):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise ConfigError(
        f"invalid configuration:\n  STREAMAE_KAFKA__STATE_TOPIC: '{k.state_topic}' has "
        f"{len(state)} partitions for the {len(inputs)} of '{k.input_topic}'; create it "
        "compacted with as many (streamae serve --create-topics does)"
    )
