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

What the checks read is a ``progress.HealthSnapshot``. ``probe.TransportProbe`` observes
the transport the loop uses (polls, seeks, commits, rebalance callbacks, and lag where the
transport reports high watermarks), so the snapshot needs nothing from the loop; a daemon
that reports its own state (``Daemon.health()``: ``in_backoff``, ``model_version``, ...)
overrides what the probe saw (:meth:`HealthSnapshot.merged`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from streamae.serving.health import metrics
from streamae.serving.health.probe import TransportProbe
from streamae.serving.health.progress import HealthSnapshot

log = logging.getLogger(__name__)

PATHS = ("/healthz", "/ready", "/metrics")


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
    ok = last is not None and now - last <= liveness_s
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
        report: Callable[[], HealthSnapshot] | None = getattr(self.daemon, "health", None)
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
