"""The checkpoint: offsets only go forward, what a commit holds, and when it is due."""

from __future__ import annotations

import pytest
from memory_transport import Clock

from streamae.serving.commit.checkpoint import Checkpoint, Mark, metadata, scored_through
from streamae.serving.errors import OffsetOrderError
from streamae.serving.transport import Offset, Partition

P = Partition("in", 0)
Q = Partition("in", 1)


def started(interval_s: float = 1.0, every: int = 0, scored: int = -1) -> tuple[Checkpoint, Clock]:
    clock = Clock()
    cp = Checkpoint(interval_s, every, clock)
    cp.start(P, 100, scored)
    return cp, clock


def test_offsets_never_go_backwards():
    cp, _ = started()
    cp.processed(P, 100, 109, 10)
    with pytest.raises(OffsetOrderError, match="only increase"):
        cp.processed(P, 105, 120, 16)
    with pytest.raises(OffsetOrderError):
        cp.processed(P, 112, 111, 0)
    cp.processed(P, 115, 120, 6)  # a gap (compaction, control records) is fine


def test_the_mark_is_the_oldest_held_reading_and_what_is_published():
    cp, _ = started()
    cp.processed(P, 100, 109, 10)
    assert cp.plan({P: 107}) == {P: Mark(107, 109)}
    assert cp.plan({P: None}) == {P: Mark(110, 109)}  # nothing held: the next offset
    assert Mark(107, 109).to_offset() == Offset(107, '{"scored_through":109}')


def test_scored_through_never_goes_back_and_survives_a_resume():
    cp, _ = started(scored=150)  # resumed from a commit that had published through 150
    cp.processed(P, 100, 109, 10)
    assert cp.plan({P: 107}) == {P: Mark(107, 150)}


def test_due_on_the_interval_from_the_first_uncommitted_record():
    cp, clock = started(interval_s=1.0)
    assert not cp.due() and cp.seconds_until_due() is None  # nothing processed
    cp.processed(P, 100, 109, 10)
    clock.advance(0.6)
    cp.processed(P, 110, 119, 10)
    assert not cp.due() and cp.seconds_until_due() == pytest.approx(0.4)
    clock.advance(0.4)
    assert cp.due()
    cp.committed(cp.plan({}))
    assert not cp.due() and cp.seconds_until_due() is None


def test_due_on_a_count_of_records_before_the_interval():
    cp, _ = started(interval_s=60, every=25)
    cp.start(Q, 0, -1)
    cp.processed(P, 100, 109, 10)
    cp.processed(Q, 0, 9, 10)
    assert not cp.due()
    cp.processed(Q, 10, 14, 5)  # 25 over both partitions
    assert cp.due()


def test_a_position_already_committed_is_not_committed_again():
    cp, clock = started(interval_s=0)
    cp.processed(P, 100, 109, 10)
    plan = cp.plan({P: 105})
    cp.published(plan)
    cp.committed(plan)
    cp.processed(P, 110, 110, 1)
    clock.advance(1)
    assert cp.plan({P: 105}) == {P: Mark(105, 110)}


def test_dropped_partitions_restart_where_their_uncommitted_work_began():
    cp, _ = started()
    cp.start(Q, 0, -1)
    cp.processed(P, 100, 109, 10)
    cp.processed(Q, 0, 9, 10)
    plan = cp.plan({P: 107, Q: 8})
    cp.committed({P: plan[P]})  # Q's commit never happened
    cp.drop([P, Q])
    assert P not in cp and not cp.due()
    assert cp.restart_point(P) == 107  # its commit
    assert cp.restart_point(Q) == 0  # never committed: where this member started it
    assert cp.restart_point(Q) is None  # once


def test_commit_metadata_round_trip_and_unreadable_metadata():
    assert scored_through(Offset(5, metadata(41))) == 41
    assert scored_through(None) == -1 and scored_through(Offset(5, "")) == -1
    assert scored_through(Offset(5, "not json")) == -1  # republish rather than lose
    assert scored_through(Offset(5, metadata(41) + "\x00")) == 41  # as confluent-kafka writes it
