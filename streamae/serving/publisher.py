"""The publisher: score, alert and dead-letter records out, and their acknowledgements in.

Outputs wait here, per source partition, until :meth:`Publisher.publish` sends them (at
once at-least-once, at the commit exactly-once); a partition revoked before then takes its
outputs along (:meth:`Publisher.drop`). A micro-batch's score records go as one batch with
one handle (``Transport.send_batch``), not one object per message. :meth:`Publisher.settle`
flushes and sorts every send by its fate (``errors.py``):

- acknowledged: counted;
- still in flight, or failed transiently (broker away, timeouts): reported, so the loop
  backs off; :meth:`Publisher.retry` sends the failed ones again (never those in flight:
  the client still retries those itself);
- refused for good (too large for the topic): published as a dead letter instead, with
  reason ``output_too_large`` (in a transaction: remembered, so that the replay after the
  abort dead-letters it at once);
- refused for a reason of configuration: :class:`DeliveryFatal` is raised.

Every record is bounded before it is sent (``STREAMAE_OUTPUT__MAX_MESSAGE_BYTES``): dead
letters are cut to fit (``dead_letters.py``), larger outputs become dead letters.
"""

from __future__ import annotations

import logging
import operator
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from streamae.core.config import KafkaSettings, OutputSettings
from streamae.serving.dead_letters import Rejected, dead_letter, record_bytes, undeliverable
from streamae.serving.health import metrics
from streamae.serving.transport import (
    Deliveries,
    Delivery,
    DeliveryError,
    DeliveryFatal,
    Header,
    Partition,
    RecordRejected,
    Transport,
)

log = logging.getLogger(__name__)

POISON_MEMORY = 10_000  # outputs refused in a transaction, remembered for the replay


class _Output(NamedTuple):
    kind: str  # "score", "shadow", "open", "close", "dead_letter", "state": what it counts as
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    offset: int = -1  # the input offset it comes from: names it if it is dead-lettered
    partition: int | None = None  # where it goes, when that is fixed (state)
    windows: int = 1  # scores: windows it carries (a batch message carries several)


class _Scores(NamedTuple):
    """The score records of one partition's micro-batch, sent as one batch (one handle)."""

    kind: str  # "score" or "shadow"
    topic: str
    records: list[tuple[bytes, bytes, int, int]]  # (key, value, offset, windows carried)


@dataclass
class Published:
    """Outputs acknowledged, by kind."""

    scores: int = 0
    alerts_opened: int = 0
    alerts_closed: int = 0
    dead_letters: int = 0


@dataclass
class Settled:
    """Where every send stands after :meth:`Publisher.settle`."""

    acked: Published = field(default_factory=Published)
    dead_letter_codes: dict[str, int] = field(default_factory=dict)  # acknowledged, per reason code
    pending: int = 0  # still in flight
    failed: int = 0  # failed transiently: :meth:`Publisher.retry` sends them again
    rejected: int = 0  # refused for good (in a transaction: the transaction must abort)
    error: DeliveryError | None = None  # the first failure, naming the broker's cause

    @property
    def complete(self) -> bool:
        return not (self.pending or self.failed or self.rejected)


class Publisher:
    """Holds outputs per source partition, sends them, and sorts out their acknowledgements."""

    def __init__(self, transport: Transport, k: KafkaSettings, o: OutputSettings | None = None) -> None:
        self.transport = transport
        self.k = k
        self.max_bytes = (o or OutputSettings()).max_message_bytes
        self.ack_timeout_s = k.request_timeout_ms / 1000
        self._held: dict[Partition, list[_Output | _Scores]] = {}
        self._in_flight: list[tuple[Partition, _Output, Delivery]] = []
        self._batches: list[tuple[Partition, _Scores, Deliveries]] = []  # score batches in flight
        self._failed: list[tuple[Partition, _Output]] = []
        self._poison: OrderedDict[tuple[str, Partition, int, bytes | None], None] = OrderedDict()

    def __len__(self) -> int:
        """Outputs held for the next publish."""
        return sum(_size(o) for held in self._held.values() for o in held)

    def in_flight(self) -> int:
        """Sends not yet settled, and failed ones waiting to be sent again."""
        return len(self._in_flight) + sum(len(b.records) for _, b, _ in self._batches) + len(self._failed)

    def add_scores(
        self, partition: Partition, records: Iterable[tuple[bytes, bytes, int, int]], topic: str | None = None
    ) -> None:
        """Hold score records ``(key, value, offset of the last window's last reading, windows)``
        for ``topic`` (default: the scores topic), as one batch."""
        kind = "score" if topic is None else "shadow"  # shadow scores are not windows published
        topic = topic or self.k.scores_topic
        batch = list(records)
        if not batch:
            return
        # the largest key and value together fit (outputs.py bounds them): no check per record
        room = self.max_bytes - record_bytes(None, None)
        if not self._poison and max(map(len, map(_KEY, batch))) + max(map(len, map(_VALUE, batch))) <= room:
            self._held.setdefault(partition, []).append(_Scores(kind, topic, batch))
            return
        for key, value, offset, windows in batch:  # each checked: too large, or refused before
            self._add(partition, _Output(kind, topic, key, value, (), offset, None, windows))

    def add_alerts(self, partition: Partition, events: Iterable[tuple[Mapping[str, Any], int]]) -> None:
        """Hold alert events, each with the offset of the window that raised it."""
        topic = self.k.alerts_topic
        for e, offset in events:
            self._add(partition, _Output(e["event"], topic, e["key"].encode(), orjson.dumps(e), (), offset))

    def add_dead_letters(self, rejected: Iterable[Rejected], after: int = -1) -> None:
        """Hold dead letters of offsets past ``after`` (those up to it were sent before a restart)."""
        for r in rejected:
            if r.offset > after:
                self.add_dead_letter(r)

    def add_dead_letter(self, r: Rejected) -> None:
        self._held.setdefault(Partition(r.topic, r.partition), []).append(self._dead_letter(r))

    def _dead_letter(self, r: Rejected) -> _Output:
        where = {"partition": f"{r.topic}[{r.partition}]", "offset": r.offset, "reason_code": r.code}
        log.warning(
            "dead letter %s[%d]@%d (%s): %s", r.topic, r.partition, r.offset, r.code, r.reason, extra=where
        )
        key, value, headers = dead_letter(r, self.max_bytes)
        return _Output("dead_letter", self.k.dlq_topic, key, value, headers, r.offset)

    def _add(self, partition: Partition, out: _Output) -> None:
        size = record_bytes(out.key, out.value, out.headers)
        if size > self.max_bytes:
            why = f"is {size} bytes, over STREAMAE_OUTPUT__MAX_MESSAGE_BYTES ({self.max_bytes})"
            self.add_dead_letter(self._undeliverable(partition, out, why, "output_too_large"))
        elif (out.topic, partition, out.offset, out.key) in self._poison:
            why = "was refused by the broker before (and the transaction aborted)"
            self.add_dead_letter(self._undeliverable(partition, out, why, "output_too_large"))
        else:
            self._held.setdefault(partition, []).append(out)

    def unsettled(self) -> set[Partition]:
        """Source partitions with outputs held, in flight or failed: not all acknowledged."""
        held = {p for p, outputs in self._held.items() if outputs}
        sent = {p for p, _, _ in self._in_flight} | {p for p, _, _ in self._batches}
        return held | sent | {p for p, _ in self._failed}

    def drop(self, partitions: Collection[Partition]) -> int:
        """Forget the unpublished outputs of ``partitions``; how many there were. Their sends
        in flight are no longer waited for nor sent again: the next owner publishes them."""
        dropped = sum(_size(o) for p in partitions for o in self._held.pop(p, ()))
        kept = [(p, o) for p, o in self._failed if p not in partitions]
        dropped += len(self._failed) - len(kept)
        self._failed = kept
        self._in_flight = [sent for sent in self._in_flight if sent[0] not in partitions]
        self._batches = [sent for sent in self._batches if sent[0] not in partitions]
        return dropped

    def publish(self) -> None:
        """Send every held output (their fate: :meth:`settle`)."""
        held, self._held = self._held, {}
        for partition, outputs in held.items():
            for o in outputs:
                if isinstance(o, _Scores):
                    keys, values, _, _ = zip(*o.records)
                    self._batches.append((partition, o, self.transport.send_batch(o.topic, keys, values)))
                else:
                    self._send(partition, o)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
    ) -> None:
        """Send one record now (the alert state); settled with the others."""
        self._send(Partition(topic, -1), _Output("state", topic, key, value, tuple(headers), -1, partition))

    def _send(self, source: Partition, o: _Output) -> None:
        delivery = self.transport.send(o.topic, o.key, o.value, o.headers, o.partition)
        self._in_flight.append((source, o, delivery))

    def retry(self) -> int:
        """Send again the outputs that failed transiently; how many."""
        failed, self._failed = self._failed, []
        for source, o in failed:
            self._send(source, o)
        return len(failed)

    def forget_in_flight(self) -> None:
        """Give up on every send (an aborted transaction: none of them will be visible)."""
        self._in_flight, self._batches, self._failed = [], [], []

    def settle(self, timeout_s: float | None = None) -> Settled:
        """Flush, wait (at most ``timeout_s``, default the request timeout) and sort every
        send by its fate; raises :class:`DeliveryFatal` for a refusal of configuration."""
        deadline = time.monotonic() + (self.ack_timeout_s if timeout_s is None else timeout_s)
        result = Settled()
        while self._in_flight or self._batches:
            self.transport.flush(max(0.0, deadline - time.monotonic()))
            in_flight, self._in_flight = self._in_flight, []
            batches, self._batches = self._batches, []
            for source, b, ds in batches:
                self._sort_batch(source, b, ds, result)
            for source, o, d in in_flight:
                self._sort(source, o, d, result)
            # dead letters of refused outputs were just sent: wait for them too
            if not self._in_flight or result.pending or time.monotonic() >= deadline:
                break
        _count(result.acked)
        metrics.dead_letters(result.dead_letter_codes)
        return result

    def _sort(self, source: Partition, o: _Output, d: Delivery, result: Settled) -> None:
        if not d.done():
            result.pending += 1
            self._in_flight.append((source, o, d))
            return
        err = d.failure()
        if err is None:
            _acked(result.acked, o)
            if o.kind == "dead_letter":
                code = dict(o.headers).get("streamae.reason_code", b"").decode()
                result.dead_letter_codes[code] = result.dead_letter_codes.get(code, 0) + 1
            return
        self._failed_send(source, o, err, result)

    def _sort_batch(self, source: Partition, b: _Scores, ds: Deliveries, result: Settled) -> None:
        if not ds.done():
            result.pending += len(b.records)
            self._batches.append((source, b, ds))
            return
        failures = ds.failures()
        if b.kind == "score":
            result.acked.scores += sum(map(_WINDOWS, b.records))
        for i, err in failures.items():
            key, value, offset, windows = b.records[i]
            if b.kind == "score":
                result.acked.scores -= windows
            self._failed_send(
                source, _Output(b.kind, b.topic, key, value, (), offset, None, windows), err, result
            )

    def _failed_send(self, source: Partition, o: _Output, err: DeliveryError, result: Settled) -> None:
        """Sort a failed send: sent again later, dead-lettered, or fatal."""
        result.error = result.error or err
        metrics.delivery_failed(o.topic)
        if isinstance(err, DeliveryFatal):
            raise err
        if not isinstance(err, RecordRejected):
            result.failed += 1
            self._failed.append((source, o))
        elif self.transport.transactional:
            result.rejected += 1  # the transaction is lost: dead-lettered in the replay
            self._poison[(o.topic, source, o.offset, o.key)] = None
            while len(self._poison) > POISON_MEMORY:
                self._poison.popitem(last=False)
        else:
            self._reject(source, o, err)

    def _reject(self, source: Partition, o: _Output, err: RecordRejected) -> None:
        """An output refused for good goes to the dead-letter topic; a dead letter refused
        (the dead-letter topic's limit is lower than ours) goes again without the original
        value; one refused even so is a configuration error."""
        if o.kind == "dead_letter" and orjson.loads(o.value or b"{}").get("value"):
            doc = {**orjson.loads(o.value or b"{}"), "value": "", "truncated": True}
            self._send(source, o._replace(value=orjson.dumps(doc)))
        elif o.kind in ("dead_letter", "state"):
            raise DeliveryFatal(
                f"'{o.topic}' refuses a record of {record_bytes(o.key, o.value)} bytes: {err}; raise "
                "its max.message.bytes (or lower STREAMAE_OUTPUT__MAX_MESSAGE_BYTES)"
            ) from err
        else:
            self._send(source, self._dead_letter(self._undeliverable(source, o, f"refused: {err}", err.code)))

    @staticmethod
    def _undeliverable(source: Partition, o: _Output, why: str, code: str) -> Rejected:
        value = o.value or b""
        return undeliverable(source.topic, source.partition, o.offset, o.topic, o.key, value, why, code)


_KEY, _VALUE, _WINDOWS = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(3)


def _size(o: _Output | _Scores) -> int:
    return len(o.records) if type(o) is _Scores else 1


def _acked(p: Published, o: _Output) -> None:
    kind = o.kind
    if kind == "score":
        p.scores += o.windows
    elif kind == "open":
        p.alerts_opened += 1
    elif kind == "close":
        p.alerts_closed += 1
    elif kind == "dead_letter":
        p.dead_letters += 1


def _count(p: Published) -> None:
    metrics.WINDOWS.inc(p.scores)
    metrics.DEAD_LETTERS.inc(p.dead_letters)
    metrics.ALERTS.labels("open").inc(p.alerts_opened)
    metrics.ALERTS.labels("close").inc(p.alerts_closed)
