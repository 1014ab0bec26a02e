"""The serving loop: poll → decode → window → micro-batch → score → alert → publish → commit.

Delivery is at-least-once and window-complete. Offsets are committed only after the
producer acknowledged every output they produced, and the committed offset is the
oldest reading still held for an unfinished window, so a restarted (or rebalanced)
consumer replays just enough to rebuild its windows. The commit metadata carries
``scored_through``, the last offset whose outputs were published; replayed windows up to
it are rebuilt and fed to the alert policy but not published again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from streamae import metrics
from streamae.alerts import AlertPolicy
from streamae.broker import DeliveryError
from streamae.config import Settings
from streamae.decode import ReadingDecoder, RecordLike, Rejected
from streamae.scoring import ScoreBatch, Scorer
from streamae.windows import Windows, WindowStore

log = logging.getLogger(__name__)

DEAD_LETTER_VALUE_BYTES = 64 * 1024


@dataclass
class PartitionState:
    """Windows, alert state and commit position of one assigned partition."""

    store: WindowStore
    policy: AlertPolicy
    start_offset: int  # the first offset this state consumed
    scored_through: int = -1  # outputs of offsets <= this are already published
    next_offset: int | None = None  # one past the last record consumed
    committed: tuple[int, int] | None = None  # (offset, scored_through) last committed


@dataclass
class DaemonStats:
    readings: int = 0
    dead_letters: int = 0
    windows: int = 0
    replayed_windows: int = 0
    alerts_opened: int = 0
    alerts_closed: int = 0
    commits: int = 0
    batches: int = 0


def _scored_through(tp: TopicPartition, metadata: str | None) -> int:
    """The ``scored_through`` offset from commit metadata; -1 (republish) when unreadable."""
    if not metadata:
        return -1
    try:
        return int(orjson.loads(metadata)["scored_through"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("%s: unreadable commit metadata %r; outputs may repeat", tp, metadata)
        return -1


class _Rebalance(ConsumerRebalanceListener):
    """Records revocations for the loop to apply.

    kafka-python 3 runs these callbacks on its IO thread, where blocking calls (commit,
    committed) are refused, while the loop waits inside ``poll()``/``close()``. So nothing
    is flushed or committed here: the loop drops the revoked partitions' unpublished work,
    and the next owner replays it from the last commit (``scored_through`` prevents
    republishing what was already published).
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.daemon.revoke(revoked)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Daemon:
    """One consumer-group member. ``run()`` blocks until ``stop()``; then drains and commits."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.consumer = consumer
        self.producer = producer
        m = scorer.manifest
        self.decoder = ReadingDecoder(m.features)
        self.stats = DaemonStats()
        self._parts: dict[TopicPartition, PartitionState] = {}
        self._pending: list[Windows] = []
        self._pending_n = 0
        self._futures: list[FutureRecordMetadata] = []
        self._dirty_since: float | None = None
        self._revoked: set[TopicPartition] = set()  # filled by the rebalance listener
        self._sought: set[TopicPartition] = set()  # partitions sought back since assignment
        self._restart_at: dict[TopicPartition, int] = {}  # where dropped work began
        self._stop = threading.Event()
        self._failed = False

    def stop(self) -> None:
        """Ask the loop to finish: it drains in-flight work, commits and returns."""
        self._stop.set()

    def run(self) -> DaemonStats:
        k = self.settings.kafka
        self.consumer.subscribe([k.input_topic], listener=_Rebalance(self))
        b = self.settings.batch
        max_wait = b.max_wait_ms / 1000
        try:
            while not self._stop.is_set():
                waited = 0.0 if self._dirty_since is None else time.monotonic() - self._dirty_since
                timeout_ms = max(1, int(1000 * min(0.25, max_wait - waited)))
                polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=k.max_poll_records)
                if self._revoked:
                    self._drop_revoked()
                for tp, records in polled.items():
                    self._ingest(tp, records)
                due = self._dirty_since is not None and (time.monotonic() - self._dirty_since >= max_wait)
                if self._pending_n >= b.max_windows or due:
                    self.flush()
            self.flush()
        finally:
            self._close_clients()
        log.info("stopped: %s", self.stats)
        return self.stats

    def _close_clients(self) -> None:
        """Close both clients; a failing close must not mask the error that stopped the loop
        (after a delivery failure kafka-python's producer raises again on close)."""
        for name, close in (
            ("consumer", lambda: self.consumer.close(autocommit=False)),
            ("producer", lambda: self.producer.close(timeout=10)),
        ):
            try:
                close()
            except Exception as exc:
                log.warning("closing the %s failed: %r", name, exc)

    # -- ingest ---------------------------------------------------------------------

    def _resume(self, tp: TopicPartition, first_offset: int) -> PartitionState | None:
        """Fresh state for a newly assigned partition, positioned at the committed offset.

        Returns None after seeking back when the fetched records do not start there: a
        partition that returns to the same member after a rebalance continues from the
        member's old position, past the tail that rebuilding its windows needs.
        """
        committed = self.consumer.committed(tp, metadata=True)
        if committed is None or committed.offset is None:
            # never committed: if this member held it before, its old work started here
            committed = None
            start = self._restart_at.pop(tp, None)
        else:
            start = committed.offset
        if start is not None and first_offset != start:
            if tp not in self._sought:
                self._sought.add(tp)
                self.consumer.seek(tp, start)
                return None
            # sought once already: the committed offset is gone (retention) or was a
            # control record; take what the log still has
            log.warning(
                "%s[%d]: committed offset %d unavailable, resuming at %d",
                tp.topic,
                tp.partition,
                start,
                first_offset,
            )
        m = self.scorer.manifest
        a = self.settings.alerts
        st = PartitionState(
            store=WindowStore(m.window, m.stride, len(m.features)),
            policy=AlertPolicy(a.k, a.n, a.quiet_windows, a.cooldown_s, a.severity_ratios),
            start_offset=first_offset,
            scored_through=_scored_through(tp, committed.metadata) if committed else -1,
        )
        log.info(
            "%s[%d]: resuming at offset %s; outputs published through %d",
            tp.topic,
            tp.partition,
            start,
            st.scored_through,
        )
        self._parts[tp] = st
        return st

    def _ingest(self, tp: TopicPartition, records: Sequence[RecordLike]) -> None:
        st = self._parts.get(tp) or self._resume(tp, records[0].offset)
        if st is None:
            return  # seeked back; these records come again
        readings, rejected = self.decoder.decode(records, tp.topic, tp.partition)
        for r in rejected:
            if r.offset > st.scored_through:  # already dead-lettered before a restart
                self._dead_letter(r)
        windows = st.store.push(readings)
        st.next_offset = records[-1].offset + 1
        self.stats.readings += len(readings)
        metrics.READINGS.inc(len(readings))
        if len(windows):
            self._pending.append(windows)
            self._pending_n += len(windows)
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()

    def _dead_letter(self, r: Rejected) -> None:
        k = self.settings.kafka
        raw = r.value or b""
        reason = r.reason[:1000]
        # bounded, so a huge poison record cannot make its own dead letter too large to send
        doc = {
            "reason": reason,
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "index": r.index,
            "key": r.key[:1000].decode("utf-8", "replace") if r.key else None,
            "value": raw[:DEAD_LETTER_VALUE_BYTES].decode("utf-8", "replace"),
            "value_bytes": len(raw),
        }
        headers = [("streamae.reason", reason.encode()[:512])]
        self._send(k.dlq_topic, r.key, orjson.dumps(doc), headers)
        self.stats.dead_letters += 1
        metrics.DEAD_LETTERS.inc()
        log.warning("dead letter %s[%d]@%d: %s", r.topic, r.partition, r.offset, r.reason)

    def _send(self, topic: str, key: bytes | None, value: bytes, headers: list | None = None) -> None:
        self._futures.append(self.producer.send(topic, value=value, key=key, headers=headers))

    # -- flush: score, publish, commit -----------------------------------------------

    def flush(self) -> None:
        """Score what is pending, publish, wait for acknowledgements, then commit.

        After a failure nothing is committed again (not even from the rebalance callback
        that closing the consumer triggers): the group resumes from the last good commit.
        """
        if self._revoked:
            self._drop_revoked()
        if self._failed or (self._dirty_since is None and not self._futures):
            return
        try:
            self._flush()
        except BaseException:
            self._failed = True
            raise

    def _flush(self) -> None:
        started = time.perf_counter()
        if self._pending:
            batch = self.scorer.score(np.concatenate([w.data for w in self._pending]))
            lo = 0
            for windows in self._pending:
                part = ScoreBatch(
                    batch.scores[lo : lo + len(windows)], batch.feature_errors[lo : lo + len(windows)]
                )
                lo += len(windows)
                self._publish(windows, part)
            self.stats.batches += 1
        self._pending, self._pending_n = [], 0
        futures, self._futures = self._futures, []
        timeout = self.settings.kafka.request_timeout_ms / 1000
        try:
            # kafka-python's flush() itself raises when the sender aborted a batch
            self.producer.flush(timeout=timeout)
            for f in futures:
                f.get(timeout=timeout)
        except Exception as exc:  # any delivery failure must stop the commit
            raise DeliveryError(f"output not acknowledged: {exc!r}") from exc
        self._commit()
        self._dirty_since = None
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.KEYS.set(sum(len(st.store) for st in self._parts.values()))

    def _publish(self, windows: Windows, batch: ScoreBatch) -> None:
        k = self.settings.kafka
        st = self._parts[TopicPartition(windows.topic, windows.partition)]
        messages = self.scorer.messages(windows, batch, self.settings.model.top_features)
        fresh = windows.last_offset > st.scored_through
        events = st.policy.update(messages)
        for msg, is_fresh in zip(messages, fresh.tolist()):
            if is_fresh:
                self._send(k.scores_topic, msg["key"].encode(), orjson.dumps(msg))
        for i, event in events:
            if fresh[i]:
                self._send(k.alerts_topic, event["key"].encode(), orjson.dumps(event))
                if event["event"] == "open":
                    self.stats.alerts_opened += 1
                else:
                    self.stats.alerts_closed += 1
                metrics.ALERTS.labels(event["event"]).inc()
        n_fresh = int(fresh.sum())
        self.stats.windows += n_fresh
        self.stats.replayed_windows += len(windows) - n_fresh
        metrics.WINDOWS.inc(n_fresh)
        metrics.REPLAYED.inc(len(windows) - n_fresh)

    def _commit(self) -> None:
        offsets = {}
        for tp, st in self._parts.items():
            if st.next_offset is None:
                continue
            oldest = st.store.oldest_offset()
            offset = st.next_offset if oldest is None else min(oldest, st.next_offset)
            st.scored_through = max(st.scored_through, st.next_offset - 1)
            if st.committed == (offset, st.scored_through):
                continue
            meta = orjson.dumps({"scored_through": st.scored_through}).decode()
            offsets[tp] = OffsetAndMetadata(offset, meta, -1)
            st.committed = (offset, st.scored_through)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # a rebalance took the partitions meanwhile: their new owner resumes from the
            # previous commit and may publish this batch's outputs again (at-least-once)
            log.warning("commit refused during a rebalance: %s", exc)
            self._revoked.update(offsets)
            return
        self.stats.commits += 1
        metrics.COMMITS.inc()

    def revoke(self, partitions: Sequence[TopicPartition]) -> None:
        """Note partitions taken away by a rebalance; the loop drops them after ``poll()``."""
        self._revoked.update(partitions)

    def _drop_revoked(self) -> None:
        """Forget revoked partitions: state, pending windows, and the one-seek allowance."""
        revoked, self._revoked = self._revoked, set()
        for tp in revoked:
            st = self._parts.pop(tp, None)
            if st is not None:
                # kafka-python keeps its position for a partition that comes straight back,
                # and with no commit yet there is nothing else to seek back to
                self._restart_at[tp] = st.committed[0] if st.committed else st.start_offset
            self._sought.discard(tp)
        kept = [w for w in self._pending if TopicPartition(w.topic, w.partition) not in revoked]
        if len(kept) != len(self._pending):
            log.info(
                "revoked %s: unpublished windows left to the next owner",
                sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked),
            )
        self._pending, self._pending_n = kept, sum(len(w) for w in kept)
