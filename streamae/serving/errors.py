"""Errors of the serving path that any transport raises (so the CLI needs no client library).

A failed output is one of three kinds, because each calls for a different response:

- :class:`DeliveryError` itself: transient (timeouts, no leader, broker gone). The daemon
  waits with backoff and sends it again; nothing is committed meanwhile.
- :class:`RecordRejected`: the broker refuses *this record* for good (larger than the
  topic's ``max.message.bytes``, invalid). Sending it again would fail again, so it goes to
  the dead-letter topic with the reason instead.
- :class:`DeliveryFatal`: refused for a reason of configuration (authorisation, a fenced
  transactional producer): no retry can fix it, so the daemon exits.
"""


class DeliveryError(RuntimeError):
    """The broker did not acknowledge an output (transient: sending it again may succeed);
    offsets stay uncommitted."""


class RecordRejected(DeliveryError):
    """The broker refuses this one record whatever the retries (e.g. too large)."""

    def __init__(self, message: str, code: str = "output_rejected") -> None:
        super().__init__(message)
        self.code = code  # the dead letter's reason_code: output_too_large, output_rejected


class DeliveryFatal(DeliveryError):
    """Outputs are refused for a reason of configuration (authorisation, fencing): fatal."""


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answered at the configured bootstrap servers."""


class TransportError(RuntimeError):
    """A Kafka operation failed; the client library's own error is the ``__cause__``."""


class TransportTimeout(TransportError):
    """A Kafka operation got no answer in time; trying again later may succeed."""


class CommitRefused(TransportError):
    """The group refused an offset commit because a rebalance took (or is taking) the
    partitions: retrying is pointless; their next owner resumes from the previous commit."""


class CommitTimeout(TransportTimeout):
    """The group coordinator did not answer an offset commit in time; the offsets stay
    uncommitted and the next commit carries them."""


class TransactionFailed(TransportError):
    """A transaction (exactly-once) cannot commit: the loop aborts it (its outputs stay
    invisible to ``read_committed`` readers, its offsets uncommitted), rewinds to the last
    commit and does the work again."""


class OffsetOrderError(RuntimeError):
    """Records of a partition arrived out of offset order (a bug: nothing may be committed)."""
