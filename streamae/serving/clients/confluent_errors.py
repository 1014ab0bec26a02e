"""confluent-kafka's errors as ours (one place that knows which librdkafka code is which), and
the delivery report of a send."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from confluent_kafka import KafkaError, KafkaException, Message

from streamae.serving import errors

#: refusals of one record that retrying cannot change: the record is dead-lettered instead
REJECTED = {
    KafkaError.MSG_SIZE_TOO_LARGE: "output_too_large",
    KafkaError.RECORD_LIST_TOO_LARGE: "output_too_large",
    KafkaError.INVALID_MSG_SIZE: "output_too_large",
    KafkaError.INVALID_RECORD: "output_rejected",
    KafkaError.INVALID_MSG: "output_rejected",
    KafkaError.TOPIC_EXCEPTION: "output_rejected",
}
#: refusals of configuration: no retry can fix them (the daemon exits)
FATAL = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_CONFIG,
    KafkaError._INVALID_ARG,
}
#: the group took the partitions (or is taking them): a commit is refused, not late
REFUSED = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._ASSIGNMENT_LOST,
}

#: no answer, no coordinator, no leader, no connection: trying again later may succeed
TRANSIENT = {
    KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._WAIT_COORD,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}


def _fatal(err: KafkaError) -> bool:
    return bool(err.fatal()) or err.code() in FATAL


def delivery_error(err: KafkaError, topic: str) -> errors.DeliveryError:
    """A send's failure as our kind (a :class:`KafkaException` of it is the ``__cause__``)."""
    code = REJECTED.get(err.code())
    kind: errors.DeliveryError
    if code is not None:
        kind = errors.RecordRejected(f"'{topic}' refuses the record: {err.str()} ({err.name()})", code)
    elif _fatal(err):
        kind = errors.DeliveryFatal(f"'{topic}' refuses outputs: {err.str()} ({err.name()})")
    else:
        kind = errors.DeliveryError(f"not acknowledged by '{topic}': {err.str()} ({err.name()})")
    kind.__cause__ = KafkaException(err)
    return kind


@contextlib.contextmanager
def translated(
    what: str,
    timeout: type[errors.TransportTimeout] = errors.TransportTimeout,
    other: type[errors.TransportError] | type[errors.DeliveryFatal] = errors.TransportError,
) -> Iterator[None]:
    """librdkafka's exceptions as ours (the original is the ``__cause__``): a refused
    commit, a fatal refusal, a transient failure (``timeout``: trying again may succeed),
    or ``other``."""
    try:
        yield
    except KafkaException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None:
            raise other(f"{what}: {exc!r}") from exc
        if err.code() in REFUSED:
            raise errors.CommitRefused(f"{what}: {err.str()}") from exc
        if _fatal(err):
            raise errors.DeliveryFatal(f"{what}: {err.str()} ({err.name()})") from exc
        if err.retriable() or err.code() in TRANSIENT:
            raise timeout(f"{what}: {err.str()} ({err.name()})") from exc
        if getattr(err, "txn_requires_abort", lambda: False)():
            raise errors.TransactionFailed(f"{what}: {err.str()} ({err.name()})") from exc
        raise other(f"{what}: {err.str()} ({err.name()})") from exc


class Delivery:
    """A send's handle. The producer reports failures only (``delivery.report.only.error``:
    no report, no Python call, per acknowledged record), so a send is done once it failed or
    once the producer holds nothing undelivered (``idle``)."""

    __slots__ = ("_failure", "_idle", "_topic")

    def __init__(self, topic: str, idle: Callable[[], bool]) -> None:
        self._topic, self._idle = topic, idle
        self._failure: errors.DeliveryError | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failure = delivery_error(err, self._topic)

    def done(self) -> bool:
        return self._failure is not None or self._idle()

    def failure(self) -> errors.DeliveryError | None:
        return self._failure


class Batch:
    """The handle of a batch of sends: one callback for all its records, called for failures only."""

    __slots__ = ("_failures", "_idle", "_index", "_keys", "_topic", "_values")

    def __init__(
        self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes], idle: Callable[[], bool]
    ) -> None:
        self._topic, self._keys, self._values, self._idle = topic, keys, values, idle
        self._failures: dict[int, errors.DeliveryError] = {}
        self._index: dict[tuple[bytes | None, bytes], int] | None = None

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        if self._index is None:  # a failure is rare: find records by content only then
            self._index = {kv: i for i, kv in enumerate(zip(self._keys, self._values))}
        i = self._index.get((msg.key(), msg.value()))  # type: ignore[arg-type]
        if i is not None:
            self._failures[i] = delivery_error(err, self._topic)

    def refused(self, i: int, err: KafkaError) -> None:
        """Record ``i`` was refused before it was queued."""
        self._failures[i] = delivery_error(err, self._topic)

    def done(self) -> bool:
        return self._idle()

    def failures(self) -> dict[int, errors.DeliveryError]:
        return dict(self._failures)
