"""Start the local KRaft broker of deploy/kafka.sh for the tests, retrying on port clashes.

A module of its own (not conftest.py) so unit tests of it can import it by a unique name.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

BROKER_START_ATTEMPTS = 5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS just had free (the one free-port helper of the
    tests and the benchmarks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _candidate_port() -> int:
    """A free port whose neighbour (the controller's port) is free too.

    Another process may still take either before the broker binds them; that is not a race
    to win here, but a failed start to retry (:func:`start_broker`).
    """
    for _ in range(50):
        port = free_port()
        if port < 65535 and _bindable(port + 1):
            return port
    raise RuntimeError("no free pair of neighbouring ports on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_taken(stderr: str, data: Path) -> bool:
    """Whether a failed ``kafka.sh start`` failed because one of its ports was taken: the
    script's own check of the broker port, or the JVM's bind error (also the controller's)."""
    logs = [stderr] + [p.read_text(errors="replace") for p in data.glob("*.log") if p.is_file()]
    return any("already in use" in text for text in logs)


def start_broker(
    script: Path,
    new_dir: Callable[[], Path],
    attempts: int = BROKER_START_ATTEMPTS,
    pick_port: Callable[[], int] = _candidate_port,
    preexec: Callable[[], None] | None = None,
) -> tuple[int, Path]:
    """Start a broker with ``script start PORT DIR``; on a port clash, again on another port
    with a fresh directory. Returns the port and the data directory of the running broker.
    ``preexec`` runs in the script's process before it starts (the benchmarks free the
    broker from their own CPU pinning)."""
    clashes = []
    for _ in range(attempts):
        port, data = pick_port(), new_dir()
        run = subprocess.run(
            ["bash", str(script), "start", str(port), str(data)],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=preexec,
        )
        if run.returncode == 0:
            return port, data
        # a broker that started but never opened its port may still run: stop it
        subprocess.run(["bash", str(script), "stop", str(data)], capture_output=True, timeout=60, check=False)
        if not _port_taken(run.stderr, data):
            raise RuntimeError(f"{script.name} start {port} failed:\n{run.stderr}")
        clashes.append(port)
    raise RuntimeError(f"{script.name}: ports {clashes} were all taken before the broker could bind them")
