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
from dataclasses import dataclass, field

import numpy as np
import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from streamae.serving import metrics
from streamae.core.alerts import AlertPolicy
from streamae.core.config import ConfigError, Settings
from streamae.core.scoring import ScoreBatch, Scorer
from streamae.core.windows import Windows, WindowStore
from streamae.serving.decode import ReadingDecoder, RecordLike, Rejected
from streamae.serving.errors import DeliveryError
from streamae.serving.kafka_python import client_configs, read_last

log = logging.getLogger(__name__)

# how long a just-created topic may take to show its partitions before the check gives up
TOPIC_SETTLE_S = 10.0

DEAD_LETTER_VALUE_BYTES = 64 * 1024
MAX_STATE_BYTES = 900 * 1024  # under the broker's default 1 MiB message limit


@dataclass
class PartitionState:
    """Windows, alert state and commit position of one assigned partition."""

    store: WindowStore
    policy: AlertPolicy
    start_offset: int  # the first offset this state consumed
    scored_through: int = -1  # outputs of offsets <= this are already published
    next_offset: int | None = None  # one past the last record consumed
    committed: tuple[int, int] | None = None  # (offset, scored_through) last committed
    smoothing: dict = field(default_factory=dict)  # key → last EWMA score, saved with the alerts


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
        self.daemon.assign(assigned)


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
        self._rejected: list[Rejected] = []  # dead letters of the pending micro-batch
        self._futures: list[FutureRecordMetadata] = []
        self._dirty_since: float | None = None
        # filled by the rebalance listener on kafka-python's IO thread
        self._rebalance_lock = threading.Lock()
        self._revoked: set[TopicPartition] = set()
        self._assigned: set[TopicPartition] = set()
        self._starts: dict[TopicPartition, tuple[int | None, OffsetAndMetadata | None]] = {}
        self._restart_at: dict[TopicPartition, int] = {}  # where dropped work began
        self._state_reader: KafkaConsumer | None = None
        self._stop = threading.Event()
        self._failed = False

    def stop(self) -> None:
        """Ask the loop to finish: it drains in-flight work, commits and returns."""
        self._stop.set()

    def run(self) -> DaemonStats:
        k = self.settings.kafka
        b = self.settings.batch
        max_wait = b.max_wait_ms / 1000
        try:
            self._check_state_topic()
            self.consumer.subscribe([k.input_topic], listener=_Rebalance(self))
            while not self._stop.is_set():
                waited = 0.0 if self._dirty_since is None else time.monotonic() - self._dirty_since
                timeout_ms = max(1, int(1000 * min(0.25, max_wait - waited)))
                polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=k.max_poll_records)
                if self._revoked:
                    self._drop_revoked()
                # records fetched before a seek to the resume point come again after it
                sought = self._position_assigned() if self._assigned else set()
                for tp, records in polled.items():
                    if tp not in sought:
                        self._ingest(tp, records)
                due = self._dirty_since is not None and (time.monotonic() - self._dirty_since >= max_wait)
                if self._pending_n >= b.max_windows or due:
                    self.flush()
            self.flush()
        finally:
            self._close_clients()
        log.info("stopped: %s", self.stats)
        return self.stats

    def _check_state_topic(self) -> None:
        k = self.settings.kafka
        # topics created a moment ago show up without partitions until they have leaders
        deadline = time.monotonic() + TOPIC_SETTLE_S
        while True:
            state = self.consumer.partitions_for_topic(k.state_topic) or set()
            inputs = self.consumer.partitions_for_topic(k.input_topic) or set()
            if len(state) >= len(inputs):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
            self.consumer.topics()  # refreshes the cached metadata
        raise ConfigError(
            f"invalid configuration:\n  STREAMAE_KAFKA__STATE_TOPIC: '{k.state_topic}' has "
            f"{len(state)} partitions for the {len(inputs)} of '{k.input_topic}'; create it "
            "compacted with as many (streamae serve --create-topics does)"
        )

    def _close_clients(self) -> None:
        """Close both clients; a failing close must not mask the error that stopped the loop
        (after a delivery failure kafka-python's producer raises again on close)."""
        reader = self._state_reader
        for name, close in (
            ("state reader", lambda: reader.close() if reader is not None else None),
            ("consumer", lambda: self.consumer.close(autocommit=False)),
            ("producer", lambda: self.producer.close(timeout=10)),
        ):
            try:
                close()
            except Exception as exc:
                log.warning("closing the %s failed: %r", name, exc)

    # -- ingest ---------------------------------------------------------------------

    def _position_assigned(self) -> set[TopicPartition]:
        """Seek newly assigned partitions to where their unfinished work begins.

        That is the committed offset, or, for a partition never committed that this member
        held before, where its dropped work began. Without the seek, kafka-python would
        continue a partition that returns to the same member from its old position, past
        the tail that rebuilding its windows needs. Returns the partitions sought.
        """
        with self._rebalance_lock:
            assigned, self._assigned = self._assigned, set()
        sought = set()
        # a later rebalance within the same poll may already have taken some back
        for tp in assigned & self.consumer.assignment():
            committed = self.consumer.committed(
                tp, metadata=True, timeout_ms=self.settings.kafka.request_timeout_ms
            )
            restart_at = self._restart_at.pop(tp, None)
            if committed is None or committed.offset is None:
                committed, start = None, restart_at
            else:
                start = committed.offset
            if start is not None:
                self.consumer.seek(tp, start)
                sought.add(tp)
            self._starts[tp] = (start, committed)
        return sought

    def _resume(self, tp: TopicPartition, first_offset: int) -> PartitionState:
        """Fresh state for a partition's first records since its assignment."""
        start, committed = self._starts.pop(tp, (None, None))
        if start is not None and first_offset > start:
            # the resume point is gone (retention) or was a control record
            log.warning(
                "%s[%d]: offset %d unavailable, resuming at %d",
                tp.topic,
                tp.partition,
                start,
                first_offset,
            )
        m = self.scorer.manifest
        a = self.settings.alerts
        st = PartitionState(
            store=WindowStore(m.window, m.stride, len(m.features), self.settings.windows.idle_ttl_s),
            policy=AlertPolicy(a.k, a.n, a.quiet_windows, a.cooldown_s, a.severity_ratios),
            start_offset=first_offset,
            scored_through=_scored_through(tp, committed.metadata) if committed else -1,
        )
        restored = self._restore_alert_state(tp, st) if committed else False
        log.info(
            "%s[%d]: resuming at offset %d; outputs published through %d; alert state %s",
            tp.topic,
            tp.partition,
            first_offset,
            st.scored_through,
            "restored" if restored else "fresh",
        )
        self._parts[tp] = st
        return st

    def _restore_alert_state(self, tp: TopicPartition, st: PartitionState) -> bool:
        """Load the alert state saved with the committed offset, if the state topic has it."""
        k = self.settings.kafka
        if self._state_reader is None:
            self._state_reader = KafkaConsumer(**client_configs(k), enable_auto_commit=False, group_id=None)
        try:
            doc = read_last(
                self._state_reader,
                TopicPartition(k.state_topic, tp.partition),
                key=f"{tp.topic}:{tp.partition}".encode(),
            )
        except KafkaTimeoutError as exc:
            log.warning("%s[%d]: alert state unreadable, starting fresh: %s", tp.topic, tp.partition, exc)
            return False
        if doc is None or doc.get("scored_through") != st.scored_through:
            # none saved yet, or saved by a flush whose commit then failed: start fresh
            return False
        st.policy.restore(doc["alerts"])
        st.smoothing.update(doc.get("smoothing", {}))
        return True

    def _ingest(self, tp: TopicPartition, records: Sequence[RecordLike]) -> None:
        st = self._parts.get(tp) or self._resume(tp, records[0].offset)
        readings, rejected = self.decoder.decode(records, tp.topic, tp.partition)
        # published with the micro-batch, so a rebalance can drop them like its windows;
        # offsets <= scored_through were dead-lettered before a restart
        self._rejected.extend(r for r in rejected if r.offset > st.scored_through)
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
        rejected, self._rejected = self._rejected, []
        for r in rejected:
            self._dead_letter(r)
        plan = self._commit_plan()
        for tp in plan:
            self._save_alert_state(tp, self._parts[tp])
        futures, self._futures = self._futures, []
        timeout = self.settings.kafka.request_timeout_ms / 1000
        try:
            # kafka-python's flush() itself raises when the sender aborted a batch
            self.producer.flush(timeout=timeout)
            for f in futures:
                f.get(timeout=timeout)
        except Exception as exc:  # any delivery failure must stop the commit
            raise DeliveryError(f"output not acknowledged: {exc!r}") from exc
        self._commit(plan)
        self._dirty_since = None
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.KEYS.set(sum(len(st.store) for st in self._parts.values()))

    def _publish(self, windows: Windows, batch: ScoreBatch) -> None:
        k = self.settings.kafka
        st = self._parts[TopicPartition(windows.topic, windows.partition)]
        fresh = windows.last_offset > st.scored_through
        n_fresh = int(fresh.sum())
        if n_fresh < len(windows):  # replayed: published before, and in the saved alert state
            windows = windows.select(fresh)
            batch = ScoreBatch(batch.scores[fresh], batch.feature_errors[fresh])
        messages = self.scorer.messages(windows, batch, self.settings.model.top_features, st.smoothing)
        for msg in messages:
            self._send(k.scores_topic, msg["key"].encode(), orjson.dumps(msg))
        for _, event in st.policy.update(messages):
            self._send(k.alerts_topic, event["key"].encode(), orjson.dumps(event))
            if event["event"] == "open":
                self.stats.alerts_opened += 1
            else:
                self.stats.alerts_closed += 1
            metrics.ALERTS.labels(event["event"]).inc()
        replayed = len(fresh) - n_fresh
        self.stats.windows += n_fresh
        self.stats.replayed_windows += replayed
        metrics.WINDOWS.inc(n_fresh)
        metrics.REPLAYED.inc(replayed)

    def _commit_plan(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """What to commit per partition now that everything consumed has been processed."""
        plan = {}
        for tp, st in self._parts.items():
            if st.next_offset is None:
                continue
            if evicted := st.store.evict_idle():
                for key in evicted:  # their smoothing too: state stays bounded by live keys
                    st.smoothing.pop(key, None)
                log.info("%s[%d]: forgot %d idle key(s)", tp.topic, tp.partition, len(evicted))
            oldest = st.store.oldest_offset()
            offset = st.next_offset if oldest is None else min(oldest, st.next_offset)
            st.scored_through = max(st.scored_through, st.next_offset - 1)
            if st.committed == (offset, st.scored_through):
                continue
            meta = orjson.dumps({"scored_through": st.scored_through}).decode()
            plan[tp] = OffsetAndMetadata(offset, meta, -1)
        return plan

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # a rebalance took the partitions meanwhile: their new owner resumes from the
            # previous commit and may publish this batch's outputs again (at-least-once)
            log.warning("commit refused during a rebalance: %s", exc)
            self.revoke(list(offsets))
            return
        for tp, om in offsets.items():
            st = self._parts.get(tp)
            if st is not None:
                st.committed = (om.offset, st.scored_through)
        self.stats.commits += 1
        metrics.COMMITS.inc()

    def _save_alert_state(self, tp: TopicPartition, st: PartitionState) -> None:
        """Alert policy state of ``tp`` as of this commit, to partition ``tp.partition`` of the
        compacted state topic: acknowledged before the commit, read back by the next owner."""
        doc = {"scored_through": st.scored_through, "alerts": st.policy.snapshot(), "smoothing": st.smoothing}
        value = orjson.dumps(doc)
        if len(value) > MAX_STATE_BYTES and st.smoothing:
            # per-key smoothing grows with the keys; alerts matter more, so they go alone
            log.warning(
                "%s[%d]: smoothing state too large to save; saving alerts only", tp.topic, tp.partition
            )
            value = orjson.dumps({**doc, "smoothing": {}})
        if len(value) > MAX_STATE_BYTES:
            # too many keys mid-alert to save in one record: the next owner starts this
            # partition's alert policy fresh rather than the daemon failing every flush
            log.error("%s[%d]: alert state of %d bytes not saved", tp.topic, tp.partition, len(value))
            return
        self._futures.append(
            self.producer.send(
                self.settings.kafka.state_topic,
                value=value,
                key=f"{tp.topic}:{tp.partition}".encode(),
                partition=tp.partition,
            )
        )

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Note partitions given by a rebalance; the loop positions them after ``poll()``."""
        with self._rebalance_lock:
            self._assigned.update(partitions)

    def revoke(self, partitions: Sequence[TopicPartition]) -> None:
        """Note partitions taken away by a rebalance; the loop drops them after ``poll()``."""
        with self._rebalance_lock:
            self._revoked.update(partitions)
            self._assigned.difference_update(partitions)

    def _drop_revoked(self) -> None:
        """Forget revoked partitions: state, pending windows, and the one-seek allowance."""
        with self._rebalance_lock:
            revoked, self._revoked = self._revoked, set()
        for tp in revoked:
            st = self._parts.pop(tp, None)
            if st is not None:
                # kafka-python keeps its position for a partition that comes straight back,
                # and with no commit yet there is nothing else to seek back to
                self._restart_at[tp] = st.committed[0] if st.committed else st.start_offset
            self._starts.pop(tp, None)
        kept = [w for w in self._pending if TopicPartition(w.topic, w.partition) not in revoked]
        if len(kept) != len(self._pending):
            log.info(
                "revoked %s: unpublished windows left to the next owner",
                sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked),
            )
        self._pending, self._pending_n = kept, sum(len(w) for w in kept)
        self._rejected = [r for r in self._rejected if TopicPartition(r.topic, r.partition) not in revoked]
