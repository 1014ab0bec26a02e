"""``/healthz``, ``/ready`` and ``/metrics`` on one port (``STREAMAE_METRICS_PORT``).

- ``/healthz`` (liveness): the loop polled the broker within ``STREAMAE_LIVENESS_S`` (or
  the process started less than that ago). Failing means "restart me": a loop that stopped
  polling recovers from nothing else.
- ``/ready`` (readiness): alive, subscribed and polled at least once (a member without
  partitions, in a group with more members than partitions, is ready: it stands by), the
  model loaded, the broker reachable and no backoff under way, and no assigned partition
  with lag that yielded nothing for ``STREAMAE_STALL_S`` (the watchdog).
- ``/metrics``: Prometheus text exposition (``prometheus_client``).

Every other path answers 404. Both checks answer 200 or 503 with a JSON body naming each
check. The server is a stdlib ``ThreadingHTTPServer`` on a daemon thread.

What the checks read is a :class:`HealthSnapshot`. :class:`TransportProbe` observes the
transport the loop uses (polls, seeks, commits, rebalance callbacks, and lag where the
transport reports high watermarks), so the snapshot needs nothing from the loop; a daemon
that reports its own state (``Daemon.health()``: ``in_backoff``, ``model_version``, ...)
overrides what the probe saw (:meth:`HealthSnapshot.merged`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from streamae.serving import metrics
from streamae.serving.errors import CommitRefused, TransportError
from streamae.serving.transport import Offset, Partition, PartitionsCallback, Record, Transport

log = logging.getLogger(__name__)

PATHS = ("/healthz", "/ready", "/metrics")


@dataclass(frozen=True)
class HealthSnapshot:
    """The daemon's state as the checks see it; times are ``time.monotonic()`` seconds."""

    started_at: float
    polled_at: float | None = None  # the last poll that returned (records or not)
    committed_at: float | None = None  # the last successful offset commit
    assigned: int = 0  # input partitions held
    subscribed: bool = False  # joined (or joining) the group
    in_backoff: bool = False  # waiting out a broker or delivery failure
    model_version: str | None = None  # None: no model loaded yet
    broker_error: str | None = None  # the last transport failure, until an operation succeeds
    stalled: tuple[str, ...] = ()  # partitions with lag and no progress for STREAMAE_STALL_S

    _FROM_DAEMON = ("polled_at", "committed_at", "assigned", "in_backoff", "model_version", "subscribed")

    def merged(self, report: object) -> HealthSnapshot:
        """This snapshot with every field ``report`` (e.g. ``Daemon.health()``) has and sets.

        ``report`` is read by attribute name, so the daemon's own snapshot type needs no
        import from here: ``polled_at``, ``committed_at``, ``assigned`` (an int or a
        collection of partitions), ``in_backoff``, ``model_version`` and ``subscribed`` are
        taken when present and not None.
        """
        changes: dict[str, Any] = {}
        for name in self._FROM_DAEMON:
            value = getattr(report, name, None)
            if value is None:
                continue
            if name == "assigned" and not isinstance(value, int):
                value = len(value)
            changes[name] = value
        return replace(self, **changes)


@dataclass(frozen=True)
class Verdict:
    """The answer of one endpoint: ok, and the named checks with a detail each."""

    ok: bool
    checks: Mapping[str, tuple[bool, str]] = field(default_factory=dict)
    info: Mapping[str, object] = field(default_factory=dict)

    def body(self) -> bytes:
        doc = {
            "status": "ok" if self.ok else "failing",
            "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in self.checks.items()},
            **self.info,
        }
        return json.dumps(doc, indent=1).encode() + b"\n"


def _ago(now: float, then: float | None) -> str:
    return "never" if then is None else f"{now - then:.1f} s ago"


def liveness(snap: HealthSnapshot, now: float, liveness_s: float) -> Verdict:
    """Alive while the loop polled within ``liveness_s`` (the start-up counts as a poll)."""
    last = snap.polled_at if snap.polled_at is not None else snap.started_at
    ok = now - last <= liveness_s
    detail = f"last poll {_ago(now, snap.polled_at)} (limit {liveness_s:g} s)"
    return Verdict(ok, {"polling": (ok, detail)})


def readiness(snap: HealthSnapshot, now: float, liveness_s: float) -> Verdict:
    """Ready to do its share: see the module docstring."""
    live = liveness(snap, now, liveness_s)
    joined = snap.subscribed and snap.polled_at is not None
    broker_ok = not snap.in_backoff and snap.broker_error is None
    broker = "reachable" if broker_ok else ("backing off" if snap.in_backoff else "")
    if snap.broker_error:
        broker = f"{broker} {snap.broker_error}".strip()
    checks = {
        **live.checks,
        "model": (snap.model_version is not None, snap.model_version or "not loaded"),
        "group": (joined, f"{snap.assigned} partition(s) assigned" if joined else "not subscribed yet"),
        "broker": (broker_ok, broker),
        "progress": (not snap.stalled, "stalled: " + ", ".join(snap.stalled) if snap.stalled else "ok"),
    }
    info = {
        "assigned": snap.assigned,
        "model_version": snap.model_version,
        "last_commit": _ago(now, snap.committed_at),
    }
    return Verdict(all(ok for ok, _ in checks.values()), checks, info)


class TransportProbe:
    """A :class:`~streamae.serving.transport.Transport` that forwards every call to the one
    it wraps and notes what health and metrics need: when polls return, which partitions
    are held, positions (polled and sought), commits (transactional ones too), transport
    failures, and each partition's lag (from ``highwater(partition)``, where the wrapped
    transport has it).

    Observation only: it changes no argument, result or exception.
    """

    def __init__(
        self, inner: Transport, stall_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self.stall_s = stall_s
        self.clock = clock
        self._lock = threading.Lock()  # rebalance callbacks may run on the client's thread
        self._polled_at: float | None = None
        self._committed_at: float | None = None
        self._subscribed = False
        self._held: set[Partition] = set()
        self._position: dict[Partition, int] = {}
        self._progressed_at: dict[Partition, float] = {}
        self._lag: dict[Partition, int] = {}
        self._stalled: set[Partition] = set()
        self._broker_error: str | None = None

    def __getattr__(self, name: str) -> Any:
        # everything not observed below (send, flush, pause, lag, and whatever a transport adds)
        return getattr(self._inner, name)

    # -- observed calls ---------------------------------------------------------------

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        def assigned(partitions: Collection[Partition]) -> None:
            now = self.clock()
            with self._lock:
                self._held.update(partitions)
                for p in partitions:  # the no-progress clock starts at assignment
                    self._progressed_at[p] = now
            on_assign(partitions)

        def revoked(partitions: Collection[Partition]) -> None:
            with self._lock:
                self._held.difference_update(partitions)
                for p in partitions:
                    self._position.pop(p, None)
                    self._progressed_at.pop(p, None)
                    self._lag.pop(p, None)
                    self._stalled.discard(p)
            metrics.forget_partitions(partitions)
            on_revoke(partitions)

        self._inner.subscribe(topics, assigned, revoked)
        self._subscribed = True

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        try:
            polled = self._inner.poll(timeout_s, max_records)
        except TransportError as exc:
            self._broker_error = str(exc)
            raise
        now = self.clock()
        metrics.polled(now)
        with self._lock:
            self._polled_at = now
            for p, records in polled.items():
                if records:
                    self._position[p] = records[-1].offset + 1
                    self._progressed_at[p] = now
            self._update_lag(now)
        return polled

    def seek(self, partition: Partition, offset: int) -> None:
        self._inner.seek(partition, offset)
        with self._lock:
            self._position[partition] = offset

    def commit(self, offsets: Mapping[Partition, Offset]) -> None:
        try:
            self._inner.commit(offsets)
        except CommitRefused:
            raise  # a rebalance, not a broker failure
        except TransportError as exc:
            self._broker_error = str(exc)
            raise
        self._committed(self.clock())

    def commit_transaction(self, offsets: Mapping[Partition, Offset]) -> None:
        # exactly-once: the offsets commit with the transaction, not through commit()
        self._inner.commit_transaction(offsets)
        self._committed(self.clock())

    def _committed(self, now: float) -> None:
        metrics.committed(now)
        self._committed_at, self._broker_error = now, None

    # -- what was seen ----------------------------------------------------------------

    def _update_lag(self, now: float) -> None:
        highwater: Callable[[Partition], int | None] | None = getattr(self._inner, "highwater", None)
        if highwater is None:
            return  # a transport without high watermarks: no lag, no stall detection
        for p in self._held:
            hw, pos = highwater(p), self._position.get(p)
            if hw is None or pos is None:
                continue
            lag = self._lag[p] = max(0, hw - pos)
            metrics.consumer_lag(p, lag)
            quiet = now - self._progressed_at.get(p, now)
            if lag > 0 and quiet > self.stall_s:
                if p not in self._stalled:
                    self._stalled.add(p)
                    log.warning(
                        "watchdog: %s is %d records behind and yielded nothing for %.0f s",
                        p,
                        lag,
                        quiet,
                        extra={"partition": str(p), "lag": lag},
                    )
            elif p in self._stalled:
                self._stalled.discard(p)
                log.info("watchdog: %s progresses again", p, extra={"partition": str(p)})
        metrics.STALLED.set(len(self._stalled))

    def observed_lag(self) -> dict[Partition, int]:
        """The last lag seen per held partition (empty without high watermarks). Not named
        ``lag``: that is the wrapped transport's own method, forwarded unchanged."""
        with self._lock:
            return dict(self._lag)

    def snapshot(self, started_at: float) -> HealthSnapshot:
        with self._lock:
            return HealthSnapshot(
                started_at=started_at,
                polled_at=self._polled_at,
                committed_at=self._committed_at,
                assigned=len(self._held),
                subscribed=self._subscribed,
                broker_error=self._broker_error,
                stalled=tuple(sorted(map(str, self._stalled))),
            )


class DaemonHealth:
    """The snapshot source of ``streamae serve``: start-up state until the probe and the
    daemon are attached, then the probe's observations overridden by ``daemon.health()``
    where the daemon has that method."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started_at = clock()
        self.probe: TransportProbe | None = None
        self.daemon: object | None = None
        self.model_version: str | None = None  # set once the bundle is loaded

    def attach(self, probe: TransportProbe, daemon: object) -> None:
        """Serving: read the probe, and the daemon's own ``health()`` where it has one."""
        self.probe, self.daemon = probe, daemon

    def snapshot(self) -> HealthSnapshot:
        snap = (
            self.probe.snapshot(self.started_at)
            if self.probe is not None
            else HealthSnapshot(started_at=self.started_at)
        )
        snap = replace(snap, model_version=self.model_version)
        report: Callable[[], object] | None = getattr(self.daemon, "health", None)
        return snap.merged(report()) if report is not None else snap


class HealthServer:
    """Serves ``/healthz``, ``/ready`` and ``/metrics`` from a daemon thread.

    ``port=0`` asks the OS for a free port (see :attr:`port`).
    """

    def __init__(
        self,
        snapshot: Callable[[], HealthSnapshot],
        port: int,
        host: str = "0.0.0.0",
        liveness_s: float = 120.0,
        registry: CollectorRegistry = REGISTRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.snapshot, self.liveness_s, self.registry, self.clock = snapshot, liveness_s, registry, clock
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="health-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health and metrics on port %d: /healthz /ready /metrics", self.port)
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def answer(self, path: str, accept: str = "") -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path`` with the ``Accept`` header."""
        if path == "/metrics":
            self._refresh_gauges()
            encode, content_type = choose_encoder(accept)  # OpenMetrics when Prometheus asks
            return HTTPStatus.OK, content_type, encode(self.registry)
        if path not in ("/healthz", "/ready"):
            return (
                HTTPStatus.NOT_FOUND,
                "text/plain; charset=utf-8",
                b"not found: try /healthz /ready /metrics\n",
            )
        check = liveness if path == "/healthz" else readiness
        verdict = check(self.snapshot(), self.clock(), self.liveness_s)
        status = HTTPStatus.OK if verdict.ok else HTTPStatus.SERVICE_UNAVAILABLE
        return status, "application/json", verdict.body()

    def _refresh_gauges(self) -> None:
        snap, now = self.snapshot(), self.clock()
        metrics.LIVE.set(liveness(snap, now, self.liveness_s).ok)
        metrics.READY.set(readiness(snap, now, self.liveness_s).ok)
        metrics.IN_BACKOFF.set(snap.in_backoff)
        metrics.ASSIGNED.set(snap.assigned)


def _handler_for(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(body=True)

        def do_HEAD(self) -> None:
            self._reply(body=False)

        def _reply(self, body: bool) -> None:
            try:
                status, content_type, payload = server.answer(
                    urlsplit(self.path).path, self.headers.get("Accept", "")
                )
            except Exception:  # a broken snapshot must not kill the server thread
                log.exception("health endpoint %s failed", self.path)
                status, content_type, payload = 500, "text/plain", b"internal error\n"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the log

    return Handler
