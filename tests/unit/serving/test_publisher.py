"""The publisher: outputs per partition until published; failures named by their cause."""

from __future__ import annotations

import orjson
import pytest
from memory_transport import MemoryDelivery, MemoryTransport

from streamae.core.config import KafkaSettings
from streamae.serving.decode import Rejected
from streamae.serving.publisher import DEAD_LETTER_VALUE_BYTES, Publisher, dead_letter
from streamae.serving.transport import DeliveryError, Partition

K = KafkaSettings(scores_topic="scores", alerts_topic="alerts", dlq_topic="dlq", request_timeout_ms=1000)
P, Q = Partition("in", 0), Partition("in", 1)


def score(key: str) -> dict:
    return {"key": key, "score": 1.0}


def test_outputs_wait_per_partition_and_a_revoked_partition_takes_its_own_along():
    t = MemoryTransport()
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a"), score("b")])
    pub.add_scores(Q, [score("c")])
    pub.add_alerts(Q, [{"key": "c", "event": "open"}])
    pub.add_dead_letter(Rejected("in", 0, 7, b"a", b"{oops", "invalid JSON"))
    assert len(pub) == 5 and not t.sent()  # nothing goes out before publish()
    assert pub.drop([Q]) == 2
    sent = pub.publish()
    assert (sent.scores, sent.alerts_opened, sent.dead_letters) == (2, 0, 1)
    pub.wait_for_acks()
    assert [orjson.loads(r.value)["key"] for r in t.records("scores")] == ["a", "b"]
    assert t.records("alerts") == [] and len(t.records("dlq")) == 1


def test_a_failed_send_is_reported_with_its_cause_not_as_a_timeout():
    t = MemoryTransport(failing_topics={"alerts"})
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a")])
    pub.add_alerts(P, [{"key": "a", "event": "open"}])
    pub.publish()
    with pytest.raises(DeliveryError, match="1 of 2 outputs not acknowledged; the first, to 'alerts'") as exc:
        pub.wait_for_acks()
    assert isinstance(exc.value.__cause__, RuntimeError)


def test_a_failure_found_while_waiting_beats_the_timeout_it_caused():
    """The broker drops its connection: the first send times out while the second fails."""

    class Stuck(MemoryTransport):
        def flush(self, timeout_s: float) -> None:  # nothing completes in time
            self.log.append(("flush",))

    t = Stuck()
    pub = Publisher(t, K)
    pub.add_scores(P, [score("a"), score("b")])
    pub.publish()
    (_, first), (_, second) = pub._in_flight
    assert isinstance(first, MemoryDelivery) and isinstance(second, MemoryDelivery)

    def wait(timeout_s: float) -> None:
        second.error, second.done = ConnectionError("broker gone"), True
        raise DeliveryError("not acknowledged within 1 s")

    first.wait = wait
    with pytest.raises(DeliveryError, match="ConnectionError") as exc:
        pub.wait_for_acks()
    assert isinstance(exc.value.__cause__, ConnectionError)


def test_nothing_in_flight_needs_no_flush():
    t = MemoryTransport()
    Publisher(t, K).wait_for_acks()
    assert t.sent() == []


def test_a_dead_letter_is_bounded_whatever_the_record():
    huge = Rejected("in", 2, 9, b"k" * 5000, b"\xff" * 2_000_000, "x" * 5000, index=3)
    value, headers = dead_letter(huge)
    doc = orjson.loads(value)
    assert len(value) < 4 * DEAD_LETTER_VALUE_BYTES
    assert doc["value_bytes"] == 2_000_000 and len(doc["reason"]) == 1000 and len(doc["key"]) == 1000
    assert (doc["topic"], doc["partition"], doc["offset"], doc["index"]) == ("in", 2, 9, 3)
    assert headers[0][0] == "streamae.reason" and len(headers[0][1]) == 512
