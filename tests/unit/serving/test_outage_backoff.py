"""A broker away for a while, on the in-memory transport: nothing is lost or repeated, the
loop stays up, reports itself in backoff, and resumes on its own."""

from __future__ import annotations

import logging

import orjson
import pytest
from daemon_harness import IN0, IN1, WINDOW, run_daemon
from memory_transport import MemoryTransport

from streamae.serving.backoff import Backoff
from streamae.serving.commit.checkpoint import scored_through
from streamae.serving.errors import CommitTimeout
from streamae.serving.loop import Daemon
from streamae.serving.transport import Offset


def window_ends(t: MemoryTransport, source: int | None = None) -> list[int]:
    """The last offset of every published window (of input partition ``source``), in order."""
    docs = [orjson.loads(r.value)["source"] for r in t.records("scores")]
    return [d["offset_end"] for d in docs if source in (None, d["partition"])]


def fill(t: MemoryTransport, reading, n: int, partition: int = 0, start: int = 0) -> None:
    for i in range(start, start + n):
        t.produce("in", partition, b"m1", reading(i))


def test_backoff_doubles_up_to_its_cap_and_a_success_starts_over():
    now = [0.0]
    b = Backoff(0.5, 3.0, lambda: now[0])
    assert not b.active and b.remaining() == 0
    assert [b.fail() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.active and b.waiting() and b.remaining() == 3.0
    now[0] = 3.0
    assert not b.waiting() and b.active
    b.succeed()
    assert not b.active and b.fail() == 0.5


def test_an_outage_mid_stream_is_waited_out_with_consumption_paused(scorer, reading, caplog):
    caplog.set_level(logging.INFO)
    t = MemoryTransport()
    fill(t, reading, 10)
    health = []

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        health.append(daemon.health())
        if t.polls == 10:  # the first commit is done: the broker goes away
            t.down = True
            fill(t, reading, 10, start=10)
            fill(t, reading, 10, partition=1)
        if t.polls == 200:
            t.down = False

    daemon = run_daemon(t, scorer, script, stop_after_polls=260, kafka={"retry_backoff_max_ms": 2000})
    during = health[150]
    assert during.in_backoff and not during.ready and during.paused and during.assigned == 2
    assert health[-1].ready and not health[-1].paused and health[-1].committed_at > during.committed_at
    # each window once, nothing lost: both partitions through their last reading
    assert window_ends(t, 0) == list(range(WINDOW - 1, 20))
    assert window_ends(t, 1) == list(range(WINDOW - 1, 10))
    assert scored_through(t.commits[IN0]) == 19 and scored_through(t.commits[IN1]) == 9
    assert daemon.stats.windows == (20 - WINDOW + 1) + (10 - WINDOW + 1)
    assert "trying again" in caplog.text and "consumption resumed" in caplog.text


def test_commits_that_time_out_are_retried_after_a_backoff_not_every_poll(scorer, reading):
    t = MemoryTransport(commit_errors=[CommitTimeout("no answer")] * 3)
    fill(t, reading, 10)
    daemon = run_daemon(t, scorer, stop_after_polls=60, kafka={"retry_backoff_ms": 1000})
    commits = [e for e in t.log if e[0] == "commit"]
    assert commits and scored_through(commits[0][1][IN0]) == 9
    assert window_ends(t) == list(range(WINDOW - 1, 10))  # published once all the same
    assert daemon.stats.commits == 1 and not t.commit_errors


def test_a_partition_assigned_while_the_broker_is_away_is_positioned_once_it_is_back(scorer, reading):
    """No committed offset can be read, so nothing of it may be used yet; once positioned it
    resumes at its commit (and its alert state) like any other."""
    t = MemoryTransport()
    fill(t, reading, 12)
    run_daemon(t, scorer)
    committed, before = t.commits[IN0], window_ends(t)
    fill(t, reading, 4, start=12)
    t2 = MemoryTransport(topics=t.topics, commits=dict(t.commits), down=True)

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        if t.polls == 30:
            assert not daemon.health().ready and daemon.stats.readings == 0
            t.down = False

    second = run_daemon(t2, scorer, script, stop_after_polls=80)
    assert ("seek", IN0, committed.offset) in t2.log
    assert window_ends(t2) == before + list(range(12, 16))  # the new windows, once
    assert second.stats.windows == 4


def test_too_many_held_outputs_make_a_commit_due_at_once(scorer, reading):
    t = MemoryTransport()
    fill(t, reading, 40)
    run_daemon(
        t,
        scorer,
        stop_after_polls=8,
        commit_interval_ms=600_000,
        output={"max_held": 5},
        kafka={"max_poll_records": 4},
        batch={"max_windows": 1},
    )
    commits = [scored_through(e[1][IN0]) for e in t.log if e[0] == "commit"]
    assert len(commits) >= 3  # not one per ten minutes: whenever five outputs wait


def test_records_of_a_partition_not_yet_positioned_are_read_again_not_skipped(scorer, reading):
    t = MemoryTransport(down=True)
    fill(t, reading, 8)

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        if t.polls == 5:
            t.down = False

    daemon = run_daemon(t, scorer, script, stop_after_polls=40)
    assert window_ends(t) == list(range(WINDOW - 1, 8)) and daemon.stats.readings == 8
    assert t.commits[IN0] == Offset(8 - (WINDOW - 1), '{"scored_through":7}')


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_partitions_given_back_while_paused_for_a_commit_are_resumed(scorer, reading, delivery):
    """The stall of issue 15: a rebalance revokes and gives straight back the partitions the
    loop had paused while a commit waited out the broker. kafka-python 3 (like this
    transport) keeps the paused flag of a partition in both assignments, so the loop must
    resume them itself, or they yield nothing forever."""
    t = MemoryTransport()
    fill(t, reading, 10)
    fill(t, reading, 10, partition=1)

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        if t.polls == 10:
            t.down = True  # the next commit waits: consumption pauses
            fill(t, reading, 10, start=10)
        if t.polls == 40:
            assert t.paused == {IN0, IN1}
            t.rebalance(revoke=[IN0, IN1])  # the group rebalances: the commit is dropped
            t.down = False
        if t.polls == 45:  # and gives them back a few polls later (the join took a while)
            t.rebalance(assign=[IN0, IN1])
        if t.polls == 60:
            fill(t, reading, 10, start=20)

    kafka = {"retry_backoff_max_ms": 500, "delivery": delivery}
    run_daemon(t, scorer, script, stop_after_polls=160, kafka=kafka)
    assert not t.paused
    assert sorted(set(window_ends(t, 0))) == list(range(WINDOW - 1, 30))
    assert scored_through(t.commits[IN0]) == 29 and scored_through(t.commits[IN1]) == 9
