"""The loop on the in-memory transport: commit order, failed deliveries, rebalances, replays."""

from __future__ import annotations

import logging

import orjson
import pytest
from daemon_harness import IN0, IN1, WINDOW, run_daemon
from memory_transport import MemoryTransport

from streamae.serving.commit.checkpoint import scored_through
from streamae.serving.errors import CommitRefused, CommitTimeout, DeliveryFatal
from streamae.serving.loop import Daemon
from streamae.serving.transport import Offset


def window_ends(t: MemoryTransport, partition: int | None = None) -> list[int]:
    """The last offset of every published window, in order."""
    return [orjson.loads(r.value)["source"]["offset_end"] for r in t.records("scores", partition)]


def fill(t: MemoryTransport, reading, n: int, partition: int = 0, key: str = "m1", start: int = 0) -> None:
    for i in range(start, start + n):
        t.produce("in", partition, key.encode(), reading(i, key))


def test_outputs_are_acknowledged_then_state_saved_then_offsets_committed(scorer, reading):
    t = MemoryTransport()
    fill(t, reading, 10)
    daemon = run_daemon(t, scorer)

    assert window_ends(t) == list(range(WINDOW - 1, 10))  # every window once, in order
    steps = t.sent()
    first_commit = steps.index("commit")
    before = steps[:first_commit]
    last_score = max(i for i, s in enumerate(before) if s == "send:scores")
    state = before.index("send:state")
    # scores → flush (acknowledged) → state → flush (acknowledged) → commit
    assert "flush" in before[last_score:state] and before[state + 1 :] == ["flush"]
    # the commit: the oldest reading a future window needs, and what is published
    c = t.commits[IN0]
    assert c.offset == 10 - (WINDOW - 1) and scored_through(c) == 9
    saved = orjson.loads(t.records("state", 0)[-1].value)
    assert saved["format"] == 1 and saved["scored_through"] == 9
    assert daemon.stats.windows == 10 - WINDOW + 1 and daemon.stats.commits == 1


def test_a_failed_delivery_is_retried_with_backoff_and_nothing_is_committed_meanwhile(
    scorer, reading, caplog
):
    """Outputs refused (transiently) for a while: no commit, consumption paused, not ready;
    once the topic takes them again, each window is published once and committed."""
    t = MemoryTransport(failing_topics={"scores"})
    fill(t, reading, 10)
    seen: list[tuple[bool, bool, bool]] = []

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        h = daemon.health()
        seen.append((h.in_backoff, h.ready, bool(t.paused)))
        if t.polls == 40:
            assert not t.commits and "send:state" not in t.sent()
            t.failing_topics.clear()

    daemon = run_daemon(t, scorer, script, stop_after_polls=80)
    assert "outputs not acknowledged" in caplog.text
    assert (True, False, True) in seen  # backing off: paused and not ready
    assert seen[-1] == (False, True, False)  # recovered by itself
    assert window_ends(t) == list(range(WINDOW - 1, 10))  # once each, in order
    assert scored_through(t.commits[IN0]) == 9 and daemon.stats.windows == 10 - WINDOW + 1


def test_a_refusal_of_configuration_ends_the_loop(scorer, reading):
    class Unauthorised(MemoryTransport):
        def flush(self, timeout_s: float) -> None:
            for pending in self._in_flight:
                pending.delivery.error = DeliveryFatal("'scores' refuses outputs: TopicAuthorizationFailed")
                pending.delivery.finished = True
            self._in_flight = []

    t = Unauthorised()
    fill(t, reading, 10)
    with pytest.raises(DeliveryFatal, match="TopicAuthorizationFailed"):
        run_daemon(t, scorer)
    assert not t.commits


def test_commits_wait_for_the_interval_not_every_micro_batch(scorer, reading):
    t = MemoryTransport()

    def trickle(t: MemoryTransport, _: object) -> None:  # a reading every 0.1 s for 3 s
        if t.polls <= 30:
            fill(t, reading, 1, start=t.polls - 1)
            t.clock.advance(0.1)

    daemon = run_daemon(t, scorer, trickle, stop_after_polls=40, commit_interval_ms=1000)
    # micro-batches every 100-200 ms, commits about once a second (and at the drain)
    assert daemon.stats.batches >= 10 and 3 <= daemon.stats.commits <= 5


def test_commit_every_count_commits_before_the_interval(scorer, reading):
    t = MemoryTransport()
    fill(t, reading, 10)
    run_daemon(
        t,
        scorer,
        stop_after_polls=3,
        commit_every=4,
        kafka={"max_poll_records": 2},
        batch={"max_windows": 1},  # score each window at once
    )
    # 2 records a poll and no time passing: the count commits after 4, then the drain
    commits = [scored_through(e[1][IN0]) for e in t.log if e[0] == "commit"]
    assert commits == [3, 5]


def test_a_partition_revoked_mid_batch_that_comes_straight_back_goes_on(scorer, reading, caplog):
    """Nothing committed yet: the pending windows are scored and acknowledged at the
    revocation, so the partition, given straight back, goes on where it was."""
    t = MemoryTransport()
    fill(t, reading, 10)

    def script(t: MemoryTransport, _: object) -> None:
        if t.polls == 3:
            t.rebalance(revoke=[IN0, IN1], assign=[IN0, IN1])

    caplog.set_level(logging.INFO)
    daemon = run_daemon(t, scorer, script, stop_after_polls=8, batch={"max_wait_ms": 60_000})
    assert "in[0]: back unchanged, going on at offset 10" in caplog.text
    assert ("seek", IN0, 10) in t.log  # where it stopped, not 0: no window read twice
    assert window_ends(t) == list(range(WINDOW - 1, 10))  # each once
    assert daemon.stats.readings == 10


def test_revoke_after_a_commit_goes_on_and_publishes_nothing_twice(scorer, reading, caplog):
    t = MemoryTransport()
    fill(t, reading, 10)

    def script(t: MemoryTransport, _: object) -> None:
        if t.polls == 20:  # the first 10 are committed by now
            fill(t, reading, 5, start=10)
        if t.polls == 23:  # these are scored and sent, not committed
            t.rebalance(revoke=[IN0, IN1], assign=[IN0, IN1])
        if t.polls == 25:
            fill(t, reading, 2, start=15)

    caplog.set_level(logging.INFO)
    daemon = run_daemon(t, scorer, script, stop_after_polls=50)
    assert window_ends(t) == list(range(WINDOW - 1, 17))
    assert ("seek", IN0, 15) in t.log
    assert daemon.stats.readings == 17
    assert "in[0]: back unchanged, going on at offset 15" in caplog.text


def test_a_partition_whose_commit_moved_while_away_replays_from_that_commit(scorer, reading, caplog):
    """Another member committed it meanwhile: what this member kept is stale, so it
    resumes from the group's commit (its outputs through scored_through not repeated)."""
    t = MemoryTransport()
    fill(t, reading, 10)

    def script(t: MemoryTransport, _: object) -> None:
        if t.polls == 20:
            fill(t, reading, 5, start=10)
        if t.polls == 23:  # someone else published and committed 10..12 meanwhile
            t.commits[IN0] = Offset(13 - (WINDOW - 1), orjson.dumps({"scored_through": 12}).decode())
            t.rebalance(revoke=[IN0, IN1], assign=[IN0, IN1])

    caplog.set_level(logging.INFO)
    daemon = run_daemon(t, scorer, script, stop_after_polls=50)
    assert ("seek", IN0, 13 - (WINDOW - 1)) in t.log
    assert "going on" not in caplog.text
    # at-least-once: 13 and 14 were sent before the revocation, and the commit says through 12
    assert window_ends(t) == [*range(WINDOW - 1, 15), 13, 14]
    assert daemon.stats.readings == 15 + (15 - (13 - (WINDOW - 1)))


def test_replayed_windows_are_rebuilt_but_not_republished(scorer, reading, caplog):
    """A new member resumes from a commit whose offset is before scored_through."""
    t = MemoryTransport()
    fill(t, reading, 12)
    first = run_daemon(t, scorer)
    assert scored_through(t.commits[IN0]) == 11
    t.commits[IN0] = Offset(5, t.commits[IN0].metadata)  # replay more than the window tail
    fill(t, reading, 3, start=12)
    caplog.set_level(logging.INFO)
    second = run_daemon(MemoryTransport(topics=t.topics, commits=t.commits), scorer)
    assert "alert state restored" in caplog.text
    assert second.stats.replayed_windows == 11 - 5 - (WINDOW - 1) + 1
    assert second.stats.windows == 3 and first.stats.windows == 12 - WINDOW + 1


def test_a_commit_refused_by_a_rebalance_is_not_fatal(scorer, reading, caplog):
    t = MemoryTransport(commit_errors=[CommitRefused("the group is rebalancing")])

    def script(t: MemoryTransport, _: object) -> None:
        if t.polls == 15:
            t.rebalance(revoke=[IN0, IN1], assign=[IN0, IN1])

    fill(t, reading, 10)
    run_daemon(t, scorer, script, stop_after_polls=40)
    assert "commit refused" in caplog.text
    # every output was acknowledged before the commit: given back, the partition goes on
    assert window_ends(t) == list(range(WINDOW - 1, 10))
    assert scored_through(t.commits[IN0]) == 9


def test_a_commit_refused_while_the_partitions_stay_here_loses_and_repeats_nothing(scorer, reading):
    """The member was dropped from the group and let back in with the same partitions, no
    callbacks in between (seen after a broker outage): its outputs were acknowledged and
    nobody committed meanwhile, so it goes on; nothing is skipped or repeated."""
    t = MemoryTransport(commit_errors=[CommitRefused("not part of an active group")])

    def script(t: MemoryTransport, _: object) -> None:
        if t.polls == 20:
            fill(t, reading, 5, start=10)

    fill(t, reading, 10)
    run_daemon(t, scorer, script, stop_after_polls=60)
    assert window_ends(t) == list(range(WINDOW - 1, 15))
    assert ("seek", IN0, 10) in t.log and scored_through(t.commits[IN0]) == 14


def test_a_commit_timeout_is_carried_by_the_next_commit(scorer, reading, caplog):
    t = MemoryTransport(commit_errors=[CommitTimeout("no answer")])
    fill(t, reading, 10)
    daemon = run_daemon(t, scorer)
    assert "commit not answered" in caplog.text
    assert window_ends(t) == list(range(WINDOW - 1, 10))  # published once all the same
    assert daemon.stats.commits == 1 and scored_through(t.commits[IN0]) == 9


def test_dead_letters_go_with_their_batch_and_not_again_after_a_replay(scorer, reading):
    t = MemoryTransport()
    fill(t, reading, 5)
    t.produce("in", 0, b"m1", b"{oops")
    fill(t, reading, 5, start=5)
    run_daemon(t, scorer)
    t2 = MemoryTransport(topics=t.topics, commits={IN0: Offset(0, t.commits[IN0].metadata)})
    run_daemon(t2, scorer)  # replays everything
    dead = [orjson.loads(r.value) for r in t2.records("dlq")]
    assert [(d["offset"], d["value"]) for d in dead] == [(5, "{oops")]


def test_assigned_is_a_snapshot_of_the_callbacks(scorer):
    t = MemoryTransport()
    seen = []

    def script(t: MemoryTransport, daemon: Daemon) -> None:
        seen.append(daemon.assigned())  # before this poll's rebalance
        if t.polls == 2:
            t.rebalance(revoke=[IN0, IN1], assign=[IN1])

    daemon = run_daemon(t, scorer, script, stop_after_polls=3)
    assert seen == [frozenset(), {IN0, IN1}, {IN1}]
    assert daemon.assigned() == frozenset()  # close() revoked everything


def test_readings_no_window_will_cover_are_dead_lettered(scorer, reading):
    """A key silent for longer than the idle TTL starts afresh: its partial window's
    readings go to the dead-letter topic with the reason, so the commit can pass them."""
    t = MemoryTransport()
    fill(t, reading, WINDOW - 1)
    t.produce("in", 0, b"m1", reading(1000))  # 60,000 s later
    run_daemon(t, scorer, windows={"idle_ttl_s": 100})
    dead = [orjson.loads(r.value) for r in t.records("dlq")]
    assert [d["offset"] for d in dead] == list(range(WINDOW - 1))
    assert all("IDLE_TTL" in d["reason"] and orjson.loads(d["value"])["key"] == "m1" for d in dead)
    assert t.commits[IN0].offset == WINDOW - 1  # only the new reading is still held


def test_a_partial_window_cut_off_after_a_commit_passed_its_readings_is_still_dead_lettered(scorer, reading):
    """A commit moves ``scored_through`` past held readings (another key's records follow
    them); a silence that cuts them off later must dead-letter them all the same: what was
    published before a restart is decided by the offset of the silence, not of the reading."""
    t = MemoryTransport()
    fill(t, reading, WINDOW - 1)  # m1: offsets 0-2, held
    fill(t, reading, WINDOW, key="m2", start=0)  # m2: offsets 3-6, one window

    def later(t: MemoryTransport, _: object) -> None:
        if t.polls == 20:  # long after the first commit
            t.produce("in", 0, b"m1", reading(1000))  # 60,000 s after m1's last reading

    run_daemon(t, scorer, later, stop_after_polls=40, commit_every=1, windows={"idle_ttl_s": 100})
    dead = [orjson.loads(r.value) for r in t.records("dlq")]
    assert [d["offset"] for d in dead] == list(range(WINDOW - 1))
    assert {d["reason_code"] for d in dead} == {"window_abandoned"}
    # a replay of everything after that is committed publishes them not again
    t2 = MemoryTransport(topics=t.topics, commits={IN0: Offset(0, t.commits[IN0].metadata)})
    run_daemon(t2, scorer, windows={"idle_ttl_s": 100})
    assert len(t2.records("dlq")) == len(dead)  # the topics are shared: nothing added


def test_a_due_commit_waits_for_the_micro_batch_without_spinning(scorer, reading):
    timeouts: list[float] = []

    class Recording(MemoryTransport):
        def poll(self, timeout_s, max_records):
            timeouts.append(timeout_s)
            return super().poll(timeout_s, max_records)

    t = Recording()
    fill(t, reading, 10)
    daemon = run_daemon(t, scorer, stop_after_polls=6, commit_interval_ms=0, batch={"max_wait_ms": 500})
    assert min(timeouts) >= 0.25 - 1e-9  # the batch's wait, not a 1 ms spin on the due commit
    assert daemon.stats.commits == 1 and window_ends(t) == list(range(WINDOW - 1, 10))


def test_end_to_end_latency_is_observed_once_per_window_when_its_commit_succeeds(scorer, reading):
    from prometheus_client import REGISTRY

    def count() -> float:
        return REGISTRY.get_sample_value("streamae_end_to_end_seconds_count") or 0.0

    t = MemoryTransport()
    fill(t, reading, WINDOW + 5)
    before = count()
    run_daemon(t, scorer)
    assert count() - before == 6 == len(window_ends(t))
    t2 = MemoryTransport(topics=t.topics, commits={IN0: Offset(0, t.commits[IN0].metadata)})
    run_daemon(t2, scorer)  # replayed windows, not published again: not observed again
    assert count() - before == 6
