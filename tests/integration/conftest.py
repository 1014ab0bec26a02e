"""Integration fixtures: which Kafka client library serves (both, for the tests that take it)."""

from __future__ import annotations

import subprocess
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
