"""Errors of the serving path that any transport raises (so the CLI needs no client library)."""


class DeliveryError(RuntimeError):
    """The broker did not acknowledge an output; offsets stay uncommitted."""


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


class OffsetOrderError(RuntimeError):
    """Records of a partition arrived out of offset order (a bug: nothing may be committed)."""
