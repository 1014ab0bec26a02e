"""Integration fixtures: which Kafka client library serves (both, for the tests that take it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_kafka import start_broker

ROOT = Path(__file__).resolve().parents[2]

BACKENDS = ("kafka-python", "confluent-kafka")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``STREAMAE_KAFKA__BACKEND``: a test that takes this fixture runs on each backend."""
    return str(request.param)


class Broker:
    """A broker of this test's own (``deploy/kafka.sh``), to stop and start again on the same
    port and data directory: an outage the clients must ride out."""

    def __init__(self, script: Path, port: int, data: Path) -> None:
        self.script, self.port, self.data = script, port, data
        self.bootstrap = f"127.0.0.1:{port}"

    def stop(self) -> None:
        subprocess.run(["bash", str(self.script), "stop", str(self.data)], check=True, timeout=90)

    def start(self) -> None:
        run = [str(self.script), "start", str(self.port), str(self.data)]
        subprocess.run(["bash", *run], check=True, timeout=300, capture_output=True)


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    script = ROOT / "deploy" / "kafka.sh"
    port, data = start_broker(script, lambda: tmp_path_factory.mktemp("own-kafka"))
    broker = Broker(script, port, data)
    try:
        yield broker
    finally:
        broker.stop()


def _spin(n: int) -> Iterator[None]:
    """``n`` processes that only burn CPU, beside the test: the loaded machine CI may be."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    """One busy process per core competing with the daemon, its client threads and the broker:
    rebalances and commits must still complete (the stall of a member that lost its turn)."""
    yield from _spin(os.cpu_count() or 2)


@pytest.fixture(autouse=True)
def cpu_hog_everywhere() -> Iterator[None]:
    """``STREAMAE_TEST_CPU_HOG=N``: N busy processes beside every integration test (a manual
    soak of the suite: run it three times in a row that way)."""
    yield from _spin(int(os.environ.get("STREAMAE_TEST_CPU_HOG", "0")))
