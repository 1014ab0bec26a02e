"""kafka-python's exceptions as ours (one place that knows which is which), and the handle of
a send."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kafka import errors as kafka_errors
from kafka.producer.future import FutureRecordMetadata

from streamae.serving import errors

#: refusals of one record that retrying cannot change: the record is dead-lettered instead
REJECTED: dict[type[Exception], str] = {
    kafka_errors.MessageSizeTooLargeError: "output_too_large",
    kafka_errors.RecordListTooLargeError: "output_too_large",
    kafka_errors.InvalidRecordError: "output_rejected",
    kafka_errors.InvalidTopicError: "output_rejected",
}
#: refusals of configuration: no retry can fix them (the daemon exits)
FATAL = (
    kafka_errors.AuthorizationError,
    kafka_errors.ProducerFencedError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.InvalidConfigurationError,
)


def delivery_error(exc: BaseException, topic: str) -> errors.DeliveryError:
    """A send's failure as our kind (the original becomes the ``__cause__``)."""
    code = next((c for t, c in REJECTED.items() if isinstance(exc, t)), None)
    kind: errors.DeliveryError
    if code is not None:
        kind = errors.RecordRejected(f"'{topic}' refuses the record: {exc!r}", code)
    elif isinstance(exc, FATAL):
        kind = errors.DeliveryFatal(f"'{topic}' refuses outputs: {exc!r}")
    else:
        kind = errors.DeliveryError(f"not acknowledged by '{topic}': {exc!r}")
    kind.__cause__ = exc
    return kind


@contextlib.contextmanager
def translated(
    what: str,
    timeout: type[errors.TransportTimeout] = errors.TransportTimeout,
    other: type[errors.TransportError] | type[errors.DeliveryFatal] = errors.TransportError,
) -> Iterator[None]:
    """kafka-python's exceptions as ours (the original is the ``__cause__``): a refused
    commit, a timeout, a fatal refusal (fencing, authorisation), or ``other``."""
    try:
        yield
    except (kafka_errors.CommitFailedError, kafka_errors.RebalanceInProgressError) as exc:
        raise errors.CommitRefused(f"{what}: {exc}") from exc
    except kafka_errors.KafkaTimeoutError as exc:
        raise timeout(f"{what}: no answer in time: {exc}") from exc
    except FATAL as exc:
        raise errors.DeliveryFatal(f"{what}: {exc!r}") from exc
    except kafka_errors.KafkaError as exc:
        raise other(f"{what}: {exc!r}") from exc


class Delivery:
    """A send's handle, on kafka-python's future (or the error that refused it at once)."""

    __slots__ = ("_failure", "_future", "_topic")

    def __init__(self, future: FutureRecordMetadata | None, topic: str, failure: BaseException | None = None):
        self._future, self._topic = future, topic
        self._failure = None if failure is None else delivery_error(failure, topic)

    def done(self) -> bool:
        return self._failure is not None or bool(self._future is not None and self._future.is_done)

    def failure(self) -> errors.DeliveryError | None:
        f = self._future
        if self._failure is None and f is not None and f.is_done and f.failed():
            self._failure = delivery_error(f.exception, self._topic)
        return self._failure


class Batch:
    """The handle of a batch of sends: kafka-python's futures (it makes one per record anyway)."""

    __slots__ = ("_done", "_failures", "_futures", "_topic")

    def __init__(self, topic: str) -> None:
        self._topic = topic
        self._futures: list[FutureRecordMetadata | None] = []
        self._failures: dict[int, errors.DeliveryError] = {}
        self._done = 0  # futures known done (they complete per broker batch, in order)

    def add(self, future: FutureRecordMetadata | None, failure: BaseException | None = None) -> None:
        if failure is not None:
            self._failures[len(self._futures)] = delivery_error(failure, self._topic)
        self._futures.append(future)

    def done(self) -> bool:
        futures = self._futures
        while self._done < len(futures):
            f = futures[self._done]
            if f is not None and not f.is_done:
                # later ones may be done already (other partitions): count them only in order
                return False
            if f is not None and f.failed():
                self._failures[self._done] = delivery_error(f.exception, self._topic)
            self._done += 1
        return True

    def failures(self) -> dict[int, errors.DeliveryError]:
        return dict(self._failures)
