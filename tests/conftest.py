"""Shared fixtures: a trained bundle (session), simulated data, and the real local broker."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from local_kafka import start_broker

from streamae.demo.simulate import DAY_S, simulate

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600.0
WINDOW = 20


@pytest.fixture(scope="session")
def history() -> pd.DataFrame:
    """Two days of normal readings for two machines (no label columns)."""
    sim = simulate(entities=2, duration_s=2 * DAY_S, anomalies_per_entity=0, start=T0, seed=11)
    return sim.frame.drop(columns=["label", "anomaly_type"])


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, history: pd.DataFrame) -> Path:
    """A dense bundle trained on ``history`` (window 20, stride 1, POT threshold at 1e-4)."""
    from streamae.core.config import TrainSettings
    from streamae.training.fit import fit

    out = tmp_path_factory.mktemp("bundle") / "dense"
    fit(
        history,
        out,
        TrainSettings(window=WINDOW, epochs=25, seed=3, threshold="pot", target_far=1e-4),
        "history",
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def scorer_of():
    """``scorer_of(bundle_dir)``: a bundle's Scorer on the CPU (the one way tests build one)."""
    from streamae.core.bundle import load_bundle
    from streamae.core.scoring import Scorer

    def make(path: Path):
        return Scorer(load_bundle(path), ["CPUExecutionProvider"])

    return make


@pytest.fixture(scope="session")
def adaptive_bundle(tmp_path_factory: pytest.TempPathFactory, history: pd.DataFrame) -> Path:
    """A dense bundle with streaming normalisation (window 10, half-life 30, block 5)."""
    from streamae.core.config import TrainSettings
    from streamae.training.fit import fit

    out = tmp_path_factory.mktemp("adaptive") / "bundle"
    cfg = TrainSettings(window=10, epochs=2, seed=1, ewma_alpha=0.5, adapt={"half_life": 30, "block": 5})
    fit(history, out, cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def post_bundle(tmp_path_factory: pytest.TempPathFactory, history: pd.DataFrame) -> Path:
    """A dense bundle with post-processing: record-high output, a 5 % widened range,
    suppression of 2 windows (window 10)."""
    from streamae.core.config import TrainSettings
    from streamae.training.fit import fit

    out = tmp_path_factory.mktemp("post") / "bundle"
    cfg = TrainSettings(window=10, epochs=2, seed=1, record_high=True, range_widen=0.05, suppress_windows=2)
    fit(history, out, cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def variant_bundles(tmp_path_factory: pytest.TempPathFactory, history: pd.DataFrame) -> dict:
    """``TrainResult`` of a small bundle of every variant (window 10, 3 epochs)."""
    from streamae.core.config import VARIANTS, TrainSettings
    from streamae.training.fit import fit

    root = tmp_path_factory.mktemp("variants")
    return {
        v: fit(history, root / v, TrainSettings(variant=v, window=10, epochs=3, seed=1), progress=False)
        for v in VARIANTS
    }


@pytest.fixture(scope="session")
def make_stream():
    """``make_stream(hours, anomalies, seed)``: a later stretch of the history's machines,
    with ``anomalies`` level shifts / spikes injected per machine."""

    def make(hours: float, anomalies: int, seed: int, entities: int = 2):
        return simulate(
            entities=entities,
            duration_s=hours * 3600,
            anomalies_per_entity=anomalies,
            start=T0 + 2 * DAY_S,
            seed=seed,
            kinds=("level_shift", "spike"),
        )

    return make


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node KRaft broker from deploy/kafka.sh (or STREAMAE_TEST_BOOTSTRAP)."""
    given = os.environ.get("STREAMAE_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    script = ROOT / "deploy" / "kafka.sh"
    port, data = start_broker(script, lambda: tmp_path_factory.mktemp("kafka"))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(script), "stop", str(data)], check=False, timeout=60)


@pytest.fixture
def topics() -> dict[str, str]:
    """Fresh topic names and group id for one test."""
    run = uuid.uuid4().hex[:8]
    return {
        "input_topic": f"t{run}.readings",
        "scores_topic": f"t{run}.scores",
        "alerts_topic": f"t{run}.alerts",
        "dlq_topic": f"t{run}.dlq",
        "state_topic": f"t{run}.alert-state",
        "group_id": f"g{run}",
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings from what the test sets alone: no STREAMAE_* variable and no .env of the caller."""
    monkeypatch.chdir(tmp_path)
    for k in list(os.environ):
        if k.startswith("STREAMAE_"):
            monkeypatch.delenv(k)
