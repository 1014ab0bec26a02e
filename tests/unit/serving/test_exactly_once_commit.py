"""Exactly-once on the in-memory transport: outputs, state and offsets in one transaction;
a failure aborts it and the loop redoes the work from the last commit."""

from __future__ import annotations

import orjson
from daemon_harness import IN0, WINDOW, run_daemon
from memory_transport import MemoryTransport

from streamae.serving.commit.checkpoint import scored_through
from streamae.serving.errors import TransactionFailed, TransportTimeout
from streamae.serving.loop import Daemon

EOS = {"delivery": "exactly_once"}


def window_ends(t: MemoryTransport) -> list[int]:
    return [orjson.loads(r.value)["source"]["offset_end"] for r in t.records("scores")]


def fill(t: MemoryTransport, reading, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        t.produce("in", 0, b"m1", reading(i))


def test_outputs_state_and_offsets_commit_in_one_transaction(scorer, reading):
    t = MemoryTransport(transactional=True)
    fill(t, reading, 10)
    run_daemon(t, scorer, kafka=EOS)
    steps = t.sent()
    begin, commit = steps.index("begin"), steps.index("commit")
    assert {"send:scores", "send:state"} <= set(steps[begin:commit]) and "abort" not in steps
    assert window_ends(t) == list(range(WINDOW - 1, 10))
    assert scored_through(t.commits[IN0]) == 9
    assert orjson.loads(t.records("state", 0)[-1].value)["scored_through"] == 9


def test_a_failed_send_aborts_the_transaction_and_the_work_is_redone_once(scorer, reading):
    t = MemoryTransport(transactional=True, failing_topics={"scores"})
    fill(t, reading, 10)

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        if daemon.stats.rewinds and t.polls > 20:
            t.failing_topics.clear()

    daemon = run_daemon(t, scorer, script, stop_after_polls=80, kafka=EOS)
    assert "abort" in t.sent() and daemon.stats.rewinds >= 1
    assert window_ends(t) == list(range(WINDOW - 1, 10))  # nothing twice, nothing lost
    assert scored_through(t.commits[IN0]) == 9


def test_a_transaction_commit_not_answered_is_committed_again_not_aborted(scorer, reading):
    t = MemoryTransport(transactional=True, commit_errors=[TransportTimeout("no answer")])
    fill(t, reading, 10)
    daemon = run_daemon(t, scorer, kafka=EOS)
    assert "abort" not in t.sent() and daemon.stats.rewinds == 0
    assert window_ends(t) == list(range(WINDOW - 1, 10))


def test_a_transaction_the_group_refuses_is_aborted_and_redone(scorer, reading):
    t = MemoryTransport(transactional=True, commit_errors=[TransactionFailed("fenced by the group")])
    fill(t, reading, 10)
    daemon = run_daemon(t, scorer, kafka=EOS)
    assert t.sent().count("abort") == 1 and daemon.stats.rewinds == 1
    assert window_ends(t) == list(range(WINDOW - 1, 10))
    assert ("seek", IN0, 0) in t.log  # rewound to where the uncommitted work began
