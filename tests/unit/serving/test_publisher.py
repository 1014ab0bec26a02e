"""The publisher: outputs per partition until published; each send sorted by its fate."""

from __future__ import annotations

import orjson
import pytest
from memory_transport import MemoryTransport

from streamae.core.config import KafkaSettings, OutputSettings
from streamae.core.messages import DeadLetter
from streamae.serving.dead_letters import Rejected
from streamae.serving.publisher import Publisher
from streamae.serving.transport import DeliveryError, DeliveryFatal, Partition

K = KafkaSettings(scores_topic="scores", alerts_topic="alerts", dlq_topic="dlq", request_timeout_ms=1000)
P, Q = Partition("in", 0), Partition("in", 1)


def score(key: str, offset: int = 0, size: int = 0) -> tuple[bytes, bytes, int, int]:
    return key.encode(), orjson.dumps({"key": key, "score": 1.0, "pad": "x" * size}), offset, 1


def test_outputs_wait_per_partition_and_a_revoked_partition_takes_its_own_along():
    t = MemoryTransport()
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a"), score("b")])
    pub.add_scores(Q, [score("c")])
    pub.add_alerts(Q, [({"key": "c", "event": "open"}, 3)])
    pub.add_dead_letter(Rejected("in", 0, 7, b"a", b"{oops", "invalid JSON", code="invalid_json"))
    assert len(pub) == 5 and not t.sent()  # nothing goes out before publish()
    assert pub.drop([Q]) == 2
    pub.publish()
    done = pub.settle()
    assert done.complete and (done.acked.scores, done.acked.alerts_opened, done.acked.dead_letters) == (
        2,
        0,
        1,
    )
    assert [orjson.loads(r.value)["key"] for r in t.records("scores")] == ["a", "b"]
    assert t.records("alerts") == [] and len(t.records("dlq")) == 1


def test_a_transient_failure_is_reported_with_its_cause_and_sent_again_by_retry():
    t = MemoryTransport(failing_topics={"alerts"})
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a")])
    pub.add_alerts(P, [({"key": "a", "event": "open"}, 0)])
    pub.publish()
    first = pub.settle()
    assert not first.complete and (first.acked.scores, first.failed) == (1, 1)
    assert isinstance(first.error, DeliveryError) and isinstance(first.error.__cause__, RuntimeError)
    assert "alerts" in str(first.error)
    t.failing_topics.clear()
    assert pub.retry() == 1
    again = pub.settle()
    assert again.complete and again.acked.alerts_opened == 1
    assert len(t.records("scores")) == 1 and len(t.records("alerts")) == 1  # nothing twice


def test_sends_still_in_flight_are_waited_for_not_sent_again():
    t = MemoryTransport(down=True)
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a"), score("b")])
    pub.publish()
    stuck = pub.settle(timeout_s=0)
    assert (stuck.pending, stuck.failed, stuck.complete) == (2, 0, False)
    assert pub.retry() == 0 and pub.in_flight() == 2
    t.down = False
    assert pub.settle().complete and len(t.records("scores")) == 2


def test_nothing_in_flight_needs_no_flush():
    t = MemoryTransport()
    assert Publisher(t, K).settle().complete
    assert t.sent() == []


def test_an_output_the_topic_refuses_as_too_large_becomes_a_dead_letter():
    """The scores topic's max.message.bytes is lower than ours: that one score is dead-lettered
    (never retried forever, never a crash); the others go out."""
    t = MemoryTransport(max_bytes={"scores": 200})
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a", 10), score("big", 11, size=500), score("c", 12)])
    pub.publish()
    done = pub.settle()
    assert done.complete and (done.acked.scores, done.acked.dead_letters) == (2, 1)
    (dead,) = [orjson.loads(r.value) for r in t.records("dlq")]
    DeadLetter.model_validate(dead)
    assert dead["reason_code"] == "output_too_large" and "'scores'" in dead["reason"]
    assert (dead["topic"], dead["partition"], dead["offset"], dead["key"]) == ("in", 0, 11, "big")
    assert orjson.loads(dead["value"])["key"] == "big"  # the output itself, as far as it fits


def test_an_output_over_the_configured_limit_is_dead_lettered_before_it_is_sent():
    t = MemoryTransport()
    pub = Publisher(t, K, OutputSettings(max_message_bytes=20_000))
    pub.add_scores(P, [score("a", 1), score("huge", 2, size=30_000)])
    pub.publish()
    assert pub.settle().complete
    assert [orjson.loads(r.value)["key"] for r in t.records("scores")] == ["a"]
    (dead,) = [orjson.loads(r.value) for r in t.records("dlq")]
    assert (
        dead["reason_code"] == "output_too_large" and "STREAMAE_OUTPUT__MAX_MESSAGE_BYTES" in dead["reason"]
    )


def test_a_dead_letter_topic_with_a_lower_limit_gets_dead_letters_without_the_value_or_a_fatal_error():
    t = MemoryTransport(max_bytes={"dlq": 400})
    pub = Publisher(t, K)
    pub.add_dead_letter(Rejected("in", 0, 7, b"a", b"x" * 1000, "invalid JSON", code="invalid_json"))
    pub.publish()
    assert pub.settle().complete
    (dead,) = [orjson.loads(r.value) for r in t.records("dlq")]
    assert dead["value"] == "" and dead["truncated"] and dead["value_bytes"] == 1000
    t.max_bytes["dlq"] = 50  # not even the bare dead letter fits: a configuration error
    pub.add_dead_letter(Rejected("in", 0, 8, b"a", b"x" * 1000, "invalid JSON", code="invalid_json"))
    pub.publish()
    with pytest.raises(DeliveryFatal, match=r"max\.message\.bytes"):
        pub.settle()


def test_in_a_transaction_a_refused_output_aborts_it_and_is_dead_lettered_on_the_replay():
    t = MemoryTransport(transactional=True, max_bytes={"scores": 200})
    pub = Publisher(t, K)
    t.begin_transaction()
    pub.add_scores(P, [score("a", 10), score("big", 11, size=500)])
    pub.publish()
    assert pub.settle().rejected == 1  # the transaction cannot commit
    t.abort_transaction()
    pub.forget_in_flight()
    t.begin_transaction()  # the replay makes the same outputs again
    pub.add_scores(P, [score("a", 10), score("big", 11, size=500)])
    pub.publish()
    assert pub.settle().complete
    t.commit_transaction({})
    assert [orjson.loads(r.value)["key"] for r in t.records("scores")] == ["a"]
    assert [orjson.loads(r.value)["reason_code"] for r in t.records("dlq")] == ["output_too_large"]


def test_sends_of_a_revoked_partition_are_neither_waited_for_nor_sent_again():
    t = MemoryTransport(failing_topics={"scores"})
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a")])
    pub.add_scores(Q, [score("b")])
    pub.publish()
    assert pub.drop([P]) == 0  # nothing held any more: one in flight
    result = pub.settle()
    assert result.failed == 1 and pub.retry() == 1  # Q's only: P's next owner publishes P's
