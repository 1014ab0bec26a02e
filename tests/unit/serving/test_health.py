"""/healthz, /ready and /metrics: status codes and bodies for healthy and unhealthy daemons,
404 elsewhere; the transport probe that feeds them (polls, lag, stalls, commits)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import pytest
from prometheus_client import REGISTRY

from streamae.serving.health.probe import TransportProbe
from streamae.serving.health.progress import HealthSnapshot
from streamae.serving.health.server import DaemonHealth, HealthServer
from streamae.serving.transport import (
    CommitRefused,
    CommitTimeout,
    Offset,
    Partition,
    PartitionsCallback,
    Record,
)

NOW = 10_000.0
P0, P1 = Partition("in", 0), Partition("in", 1)

HEALTHY = HealthSnapshot(
    started_at=NOW - 600,
    polled_at=NOW - 1,
    committed_at=NOW - 2,
    assigned=2,
    subscribed=True,
    model_version="v1",
)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], HealthSnapshot]], int]]:
    """serve(snapshot) -> the port of a running server (the OS picks it: no port race)."""
    servers: list[HealthServer] = []

    def start(snapshot: Callable[[], HealthSnapshot]) -> int:
        server = HealthServer(snapshot, 0, "127.0.0.1", liveness_s=120, clock=Clock()).start()
        servers.append(server)
        return server.port

    yield start
    for s in servers:
        s.close()


def test_healthy_daemon_is_live_and_ready(serve):
    port = serve(lambda: HEALTHY)
    for path in ("/healthz", "/ready", "/ready?verbose=1"):
        status, ctype, body = get(port, path)
        assert (status, ctype) == (200, "application/json"), path
        doc = json.loads(body)
        assert doc["status"] == "ok" and all(c["ok"] for c in doc["checks"].values())
    doc = json.loads(get(port, "/ready")[2])
    assert doc["assigned"] == 2 and doc["model_version"] == "v1"
    assert set(doc["checks"]) == {"polling", "model", "group", "broker", "progress"}


@pytest.mark.parametrize(
    ("change", "live", "failing"),
    [
        ({"polled_at": NOW - 121}, False, ["polling"]),  # the loop stopped polling
        ({"polled_at": None, "started_at": NOW - 121}, False, ["polling", "group"]),  # never polled
        ({"model_version": None}, True, ["model"]),
        ({"subscribed": False}, True, ["group"]),
        ({"polled_at": None, "started_at": NOW - 5}, True, ["group"]),  # starting: live, not ready
        ({"in_backoff": True}, True, ["broker"]),
        ({"broker_error": "offset commit: no answer in time"}, True, ["broker"]),
        ({"stalled": ("in[1]",)}, True, ["progress"]),
    ],
)
def test_each_unhealthy_state_fails_its_check(serve, change, live, failing):
    port = serve(lambda: replace(HEALTHY, **change))
    status, _, body = get(port, "/healthz")
    assert status == (200 if live else 503)
    status, _, body = get(port, "/ready")
    assert status == 503
    doc = json.loads(body)
    assert doc["status"] == "failing"
    assert [name for name, c in doc["checks"].items() if not c["ok"]] == failing


def test_no_partitions_but_subscribed_is_ready(serve):
    """A member beyond the partition count stands by: ready, so rollouts are not stuck."""
    port = serve(lambda: replace(HEALTHY, assigned=0))
    assert get(port, "/ready")[0] == 200


def test_metrics_are_served_beside_the_checks(serve):
    port = serve(lambda: replace(HEALTHY, in_backoff=True))
    status, ctype, body = get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")  # no Accept: classic text
    text = body.decode()
    assert "# TYPE streamae_readings_total counter" in text
    # refreshed from the snapshot at each scrape
    assert "streamae_ready 0.0" in text and "streamae_in_backoff 1.0" in text
    assert "streamae_live 1.0" in text and "streamae_assigned_partitions 2.0" in text


def test_metrics_speak_openmetrics_when_asked(serve):
    port = serve(lambda: HEALTHY)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert r.read().rstrip().endswith(b"# EOF")


@pytest.mark.parametrize("path", ["/", "/metricsx", "/healthz/more", "/favicon.ico", "/READY"])
def test_other_paths_are_not_found(serve, path):
    port = serve(lambda: HEALTHY)
    status, _, body = get(port, path)
    assert status == 404 and b"streamae_" not in body


def test_head_answers_without_a_body(serve):
    port = serve(lambda: replace(HEALTHY, polled_at=NOW - 500))
    status, _, body = get(port, "/healthz", method="HEAD")
    assert status == 503 and body == b""


def test_a_failing_snapshot_answers_500_and_the_server_goes_on(serve):
    calls = iter([RuntimeError("boom")])

    def snapshot() -> HealthSnapshot:
        err = next(calls, None)
        if err:
            raise err
        return HEALTHY

    port = serve(snapshot)
    assert get(port, "/ready")[0] == 500
    assert get(port, "/ready")[0] == 200


def test_snapshot_merges_the_daemons_own_report():
    base = HealthSnapshot(
        started_at=NOW, polled_at=NOW - 3, assigned=1, subscribed=True, broker_error="down", stalled=("in-0",)
    )
    report = HealthSnapshot(polled_at=NOW - 1, assigned=2, in_backoff=True, model_version="v2", paused=True)
    merged = base.merged(report)
    assert merged.polled_at == NOW - 1 and merged.assigned == 2 and merged.paused
    assert merged.in_backoff and merged.model_version == "v2"
    assert merged.committed_at is None  # None keeps the probe's
    # what only the probe knows stays, whatever the daemon's report says
    assert (merged.started_at, merged.subscribed, merged.broker_error, merged.stalled) == (
        NOW,
        True,
        "down",
        ("in-0",),
    )


def test_snapshot_merges_the_loops_health_snapshot():
    """Daemon.health()'s report: the loop's fields (a reload, held outputs, lag) come along."""
    report = HealthSnapshot(
        polled_at=NOW - 1,
        last_progress=NOW - 1,
        committed_at=NOW - 4,
        assigned=3,
        in_backoff=True,
        paused=True,
        model_version="v7",
        lag={P0: 5},
        held_outputs=4,
        reloads=1,
    )
    merged = HealthSnapshot(started_at=NOW, subscribed=True).merged(report)
    assert (merged.polled_at, merged.committed_at, merged.assigned) == (NOW - 1, NOW - 4, 3)
    assert merged.in_backoff and merged.model_version == "v7" and merged.subscribed
    assert (merged.total_lag, merged.held_outputs, merged.reloads) == (5, 4, 1)


# -- the transport probe ----------------------------------------------------------------


@dataclass
class FakeTransport:
    """Just enough of a Transport: queued polls, high watermarks, scripted commit errors."""

    polls: list[dict[Partition, list[Record]]] = field(default_factory=list)
    highwaters: dict[Partition, int] = field(default_factory=dict)
    commit_errors: list[Exception] = field(default_factory=list)
    callbacks: tuple[PartitionsCallback, PartitionsCallback] | None = None
    sent: list[str] = field(default_factory=list)
    transactions: int = 0

    def subscribe(self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback):
        self.callbacks = (on_assign, on_revoke)

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        return self.polls.pop(0) if self.polls else {}

    def seek(self, partition: Partition, offset: int) -> None:
        pass

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)

    def highwater(self, partition: Partition) -> int | None:
        return self.highwaters.get(partition)

    def send(self, topic: str, *args: object, **kwargs: object) -> None:
        self.sent.append(topic)

    def commit_transaction(self, offsets: Mapping[Partition, Offset]) -> None:
        self.transactions += 1

    def lag(self) -> dict[Partition, int]:
        return {P1: 99}

    def assign(self, partitions: Collection[Partition]) -> None:
        assert self.callbacks is not None
        self.callbacks[0](partitions)

    def revoke(self, partitions: Collection[Partition]) -> None:
        assert self.callbacks is not None
        self.callbacks[1](partitions)


def records(p: Partition, first: int, n: int) -> list[Record]:
    return [Record(p.topic, p.partition, o, None, b"{}") for o in range(first, first + n)]


def lag_metric(p: Partition) -> float | None:
    return REGISTRY.get_sample_value(
        "streamae_consumer_lag", {"topic": p.topic, "partition": str(p.partition)}
    )


@pytest.fixture
def probed() -> tuple[FakeTransport, TransportProbe, Clock, list[str]]:
    inner, clock, seen = FakeTransport(), Clock(), []
    probe = TransportProbe(inner, stall_s=60, clock=clock)
    probe.subscribe(
        ["in"], lambda ps: seen.append(f"assigned {sorted(ps)}"), lambda ps: seen.append("revoked")
    )
    return inner, probe, clock, seen


def test_probe_forwards_callbacks_and_notes_polls_positions_and_lag(probed):
    inner, probe, clock, seen = probed
    snap = probe.snapshot(NOW)
    assert snap.subscribed and snap.polled_at is None and snap.assigned == 0
    inner.assign([P0, P1])
    assert seen == [f"assigned {sorted([P0, P1])}"]  # the loop's callback still runs
    probe.seek(P0, 100)
    inner.highwaters = {P0: 150, P1: 7}
    inner.polls = [{P0: records(P0, 100, 20)}]
    clock.now += 1
    assert probe.poll(0.1, 100) == {P0: records(P0, 100, 20)}  # unchanged
    snap = probe.snapshot(NOW)
    assert snap.polled_at == clock.now and snap.assigned == 2
    assert probe.observed_lag() == {P0: 30}  # P1: no position yet (neither sought nor polled)
    assert lag_metric(P0) == 30
    inner.revoke([P0])
    assert lag_metric(P0) is None and probe.snapshot(NOW).assigned == 1  # its series is gone
    assert seen[-1] == "revoked"


def test_probe_watchdog_flags_a_partition_with_lag_and_no_progress(probed, caplog):
    inner, probe, clock, _ = probed
    inner.assign([P0])
    probe.seek(P0, 0)
    inner.highwaters = {P0: 500}
    probe.poll(0.1, 100)
    clock.now += 59
    probe.poll(0.1, 100)
    assert probe.snapshot(NOW).stalled == ()
    with caplog.at_level(logging.WARNING, "streamae.serving.health.server"):
        clock.now += 2  # 61 s without a record, 500 waiting
        probe.poll(0.1, 100)
        probe.poll(0.1, 100)  # logged once, not per poll
    assert probe.snapshot(NOW).stalled == ("in[0]",)
    assert [r.getMessage() for r in caplog.records] == [
        "watchdog: in[0] is 500 records behind and yielded nothing for 61 s"
    ]
    assert REGISTRY.get_sample_value("streamae_stalled_partitions") == 1
    inner.polls = [{P0: records(P0, 0, 10)}]
    probe.poll(0.1, 100)
    assert probe.snapshot(NOW).stalled == ()


def test_probe_without_lag_is_never_stalled(probed):
    inner, probe, clock, _ = probed
    inner.assign([P0])
    probe.seek(P0, 500)
    inner.highwaters = {P0: 500}  # caught up: quiet is fine
    clock.now += 600
    probe.poll(0.1, 100)
    assert probe.snapshot(NOW).stalled == ()


def test_probe_notes_commits_and_broker_failures(probed):
    inner, probe, clock, _ = probed
    inner.commit_errors = [CommitTimeout("offset commit: no answer in time"), CommitRefused("rebalance")]
    with pytest.raises(CommitTimeout):
        probe.commit({P0: Offset(1)})
    snap = probe.snapshot(NOW)
    assert snap.broker_error == "offset commit: no answer in time" and snap.committed_at is None
    with pytest.raises(CommitRefused):  # a rebalance is not a broker failure
        probe.commit({P0: Offset(1)})
    assert probe.snapshot(NOW).broker_error is not None
    clock.now += 5
    probe.commit({P0: Offset(1)})
    snap = probe.snapshot(NOW)
    assert snap.broker_error is None and snap.committed_at == clock.now
    assert REGISTRY.get_sample_value("streamae_seconds_since_commit") < 60


def test_probe_forwards_everything_else_and_observes_transactions(probed):
    inner, probe, clock, _ = probed
    probe.send("scores", None, b"x")
    assert inner.sent == ["scores"]
    assert probe.lag() == {P1: 99}  # the transport's own, not the probe's observation
    clock.now += 3
    probe.commit_transaction({P0: Offset(1)})
    assert inner.transactions == 1 and probe.snapshot(NOW).committed_at == clock.now
    with pytest.raises(AttributeError):
        probe.no_such_method  # noqa: B018


def test_daemon_health_before_and_after_start_up():
    clock = Clock()
    health = DaemonHealth(clock)
    start = health.snapshot()
    assert start.started_at == NOW and start.model_version is None and not start.subscribed
    inner = FakeTransport()
    probe = TransportProbe(inner, clock=clock)
    probe.subscribe(["in"], lambda ps: None, lambda ps: None)
    health.model_version = "v1"
    health.attach(probe, object())  # a daemon without health(): the probe alone
    probe.poll(0.1, 10)
    snap = health.snapshot()
    assert snap.model_version == "v1" and snap.subscribed and snap.polled_at == NOW

    class Reporting:
        def health(self) -> HealthSnapshot:
            return HealthSnapshot(in_backoff=True, model_version="v2")

    health.attach(probe, Reporting())
    snap = health.snapshot()
    assert snap.in_backoff and snap.model_version == "v2"  # the daemon's word wins
