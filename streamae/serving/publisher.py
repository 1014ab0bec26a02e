"""The publisher: score, alert and dead-letter records out, and their acknowledgements in.

Outputs wait here, per source partition, until the next commit publishes them: a
partition revoked before then takes its outputs along (:meth:`Publisher.drop`) and its
next owner, replaying from the last commit, publishes them once. Every send's handle is
kept until :meth:`Publisher.wait_for_acks`, which raises :class:`DeliveryError` naming
the cause when any send failed or was not acknowledged in time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from streamae.core.config import KafkaSettings
from streamae.serving import metrics
from streamae.serving.decode import Rejected
from streamae.serving.transport import Delivery, DeliveryError, Header, Partition, Transport

log = logging.getLogger(__name__)

DEAD_LETTER_VALUE_BYTES = 64 * 1024
REASON_CHARS = 1000


def dead_letter(r: Rejected) -> tuple[bytes, tuple[Header, ...]]:
    """The dead-letter document (see ``messages.DeadLetter``) of a rejected record, and its
    headers. Bounded, so a huge poison record cannot make its own dead letter too large."""
    raw = r.value or b""
    reason = r.reason[:REASON_CHARS]
    doc = {
        "reason": reason,
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "index": r.index,
        "key": r.key[:REASON_CHARS].decode("utf-8", "replace") if r.key else None,
        "value": raw[:DEAD_LETTER_VALUE_BYTES].decode("utf-8", "replace"),
        "value_bytes": len(raw),
    }
    return orjson.dumps(doc), (("streamae.reason", reason.encode()[:512]),)


class _Output(NamedTuple):
    kind: str  # "score", "open", "close" or "dead_letter": what it counts as
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[Header, ...] = ()


@dataclass
class Published:
    """What one :meth:`Publisher.publish` sent."""

    scores: int = 0
    alerts_opened: int = 0
    alerts_closed: int = 0
    dead_letters: int = 0


class Publisher:
    """Buffers outputs per source partition, sends them, and waits for their acknowledgements."""

    def __init__(self, transport: Transport, k: KafkaSettings) -> None:
        self.transport = transport
        self.k = k
        self.ack_timeout_s = k.request_timeout_ms / 1000
        self._outputs: dict[Partition, list[_Output]] = {}
        self._in_flight: list[tuple[str, Delivery]] = []

    def __len__(self) -> int:
        """Outputs waiting to be published."""
        return sum(map(len, self._outputs.values()))

    def add_scores(self, partition: Partition, messages: Iterable[Mapping[str, Any]]) -> None:
        out = self._outputs.setdefault(partition, [])
        topic = self.k.scores_topic
        out.extend(_Output("score", topic, m["key"].encode(), orjson.dumps(m)) for m in messages)

    def add_alerts(self, partition: Partition, events: Iterable[Mapping[str, Any]]) -> None:
        out = self._outputs.setdefault(partition, [])
        topic = self.k.alerts_topic
        out.extend(_Output(e["event"], topic, e["key"].encode(), orjson.dumps(e)) for e in events)

    def add_dead_letter(self, r: Rejected) -> None:
        log.warning("dead letter %s[%d]@%d: %s", r.topic, r.partition, r.offset, r.reason)
        value, headers = dead_letter(r)
        out = self._outputs.setdefault(Partition(r.topic, r.partition), [])
        out.append(_Output("dead_letter", self.k.dlq_topic, r.key, value, headers))

    def drop(self, partitions: Collection[Partition]) -> int:
        """Forget the unpublished outputs of ``partitions``; how many there were."""
        return sum(len(self._outputs.pop(p, ())) for p in partitions)

    def publish(self) -> Published:
        """Send every buffered output (acknowledgements: :meth:`wait_for_acks`)."""
        counts = {"score": 0, "open": 0, "close": 0, "dead_letter": 0}
        outputs, self._outputs = self._outputs, {}
        for out in outputs.values():
            for o in out:
                self.send(o.topic, o.key, o.value, o.headers)
                counts[o.kind] += 1
        metrics.WINDOWS.inc(counts["score"])
        metrics.DEAD_LETTERS.inc(counts["dead_letter"])
        for event in ("open", "close"):
            metrics.ALERTS.labels(event).inc(counts[event])
        return Published(counts["score"], counts["open"], counts["close"], counts["dead_letter"])

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> None:
        """Send one record now; its acknowledgement is awaited with the others."""
        self._in_flight.append((topic, self.transport.send(topic, key, value, headers, partition)))

    def wait_for_acks(self) -> None:
        """Flush, then wait until every send so far is acknowledged.

        Raises :class:`DeliveryError` naming the first failure's cause (a failure is
        reported before any timeout, which it may have caused).
        """
        in_flight, self._in_flight = self._in_flight, []
        if not in_flight:
            return
        deadline = time.monotonic() + self.ack_timeout_s
        self.transport.flush(self.ack_timeout_s)
        _raise_first_failure(in_flight)
        for _, delivery in in_flight:
            try:
                delivery.wait(max(0.0, deadline - time.monotonic()))
            except DeliveryError:
                _raise_first_failure(in_flight)
                raise


def _raise_first_failure(in_flight: Sequence[tuple[str, Delivery]]) -> None:
    failed = [(topic, exc) for topic, d in in_flight if (exc := d.failure()) is not None]
    if failed:
        topic, exc = failed[0]
        raise DeliveryError(
            f"{len(failed)} of {len(in_flight)} outputs not acknowledged; the first, to '{topic}': {exc!r}"
        ) from exc
