"""Rebalance bookkeeping: callbacks from any thread, positions from commits or dropped work."""

from __future__ import annotations

import threading

from memory_transport import MemoryTransport

from streamae.serving.commit.checkpoint import Checkpoint
from streamae.serving.commit.rebalance import Rebalance, Resume, position
from streamae.serving.transport import Offset, Partition

P, Q, R = Partition("in", 0), Partition("in", 1), Partition("in", 2)


def test_callbacks_from_another_thread_are_taken_once_by_the_loop():
    rb = Rebalance()
    t = threading.Thread(target=lambda: (rb.on_assign([P, Q]), rb.on_revoke([Q])))
    t.start()
    t.join()
    assert rb.held() == {P}
    assert rb.take_revoked() == {Q} and rb.take_revoked() == set()
    assert rb.take_assigned() == {P}  # Q's assignment was withdrawn by its revocation


def test_a_refused_commit_drops_partitions_still_held():
    rb = Rebalance()
    rb.on_assign([P])
    rb.take_assigned()
    rb.drop_later([P])
    assert rb.take_revoked() == {P} and rb.held() == {P}


def test_a_refused_commit_repositions_the_partitions_still_held():
    rb = Rebalance()
    rb.on_assign([P, Q])
    rb.take_assigned()
    rb.on_revoke([Q])
    rb.take_revoked()
    rb.restart_later([P, Q])
    assert rb.take_revoked() == {P, Q} and rb.take_assigned() == {P}  # P: read again from its commit


def assigned(t: MemoryTransport, partitions: list[Partition]) -> MemoryTransport:
    t.subscribe(["in"], lambda _: None, lambda _: None)
    t._rebalances.clear()
    t._assigned = set(partitions)
    return t


def test_position_seeks_to_the_commit_else_where_dropped_work_began():
    t = assigned(MemoryTransport(partitions=3), [P, Q, R])
    t.commits[P] = Offset(40, '{"scored_through":45}')
    cp = Checkpoint(1.0)
    cp.start(Q, 12, -1)
    cp.drop([Q])
    resumes = position(t, [P, Q, R, Partition("in", 3)], cp)  # in[3]: taken back meanwhile
    assert resumes == {
        P: Resume(40, Offset(40, '{"scored_through":45}')),
        Q: Resume(12, None),
        R: Resume(None, None),  # new to this member, never committed: the reset policy
    }
    assert [e for e in t.log if e[0] == "seek"] == [("seek", P, 40), ("seek", Q, 12)]
