"""When a micro-batch is scored at once: the consumer has caught up with what it reads."""

from streamae.serving.microbatch import caught_up
from streamae.serving.transport import Partition, Record

P0, P1 = Partition("in", 0), Partition("in", 1)


def _records(p: Partition, first: int, last: int) -> list[Record]:
    return [Record(p.topic, p.partition, o, None, b"{}") for o in range(first, last + 1)]


def test_a_poll_at_the_end_of_every_partition_it_read_has_caught_up():
    ends = {P0: 10, P1: 500}
    assert caught_up({P0: _records(P0, 0, 9)}, ends.get)  # P1 not read this time: no matter
    assert caught_up({P0: _records(P0, 5, 9), P1: _records(P1, 0, 499)}, ends.get)


def test_a_backlog_on_any_partition_read_lets_the_batch_grow():
    ends = {P0: 10, P1: 500}
    assert not caught_up({P0: _records(P0, 0, 9), P1: _records(P1, 0, 199)}, ends.get)


def test_an_end_the_client_does_not_know_yet_counts_as_reached():
    assert caught_up({P0: _records(P0, 0, 3)}, {}.get)
