"""The metrics of docs/operations.md: defined, documented, and updated by one-line calls."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from streamae.serving.health import metrics
from streamae.serving.transport import Partition

DOCS = Path(__file__).resolve().parents[3] / "docs/operations.md"


def value(name: str, **labels: str) -> float:
    v = REGISTRY.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_bulk_histogram_counts_as_prometheus_histogram_does():
    registry = CollectorRegistry()
    buckets = (0.1, 1.0, 10.0)
    bulk = metrics.BulkHistogram("bulk_seconds", "test", buckets, registry)
    reference = Histogram("reference_seconds", "test", buckets=buckets, registry=registry)
    values = [0.05, 0.1, 0.1000001, 1.0, 3.0, 10.0, 11.0, 1e9, -1.0, float("nan"), float("inf")]
    bulk.observe_many(values)
    for v in values:
        if np.isfinite(v):
            reference.observe(max(v, 0.0))  # bulk: negatives count as 0, non-finite are skipped
    for le in ("0.1", "1.0", "10.0", "+Inf"):
        assert registry.get_sample_value("bulk_seconds_bucket", {"le": le}) == registry.get_sample_value(
            "reference_seconds_bucket", {"le": le}
        ), le
    assert registry.get_sample_value("bulk_seconds_count") == 9
    assert registry.get_sample_value("bulk_seconds_sum") == pytest.approx(
        registry.get_sample_value("reference_seconds_sum")
    )


def test_end_to_end_latency_from_event_times():
    before = value("streamae_end_to_end_seconds_count")
    le_1s = value("streamae_end_to_end_seconds_bucket", le="1.0")
    metrics.end_to_end(np.array([99.5, 99.9, 50.0]), acked_at_s=100.0)
    assert value("streamae_end_to_end_seconds_count") == before + 3
    assert value("streamae_end_to_end_seconds_bucket", le="1.0") == le_1s + 2


def test_dead_letters_per_reason_code():
    for code in metrics.REASON_CODES:  # every series exists from the start
        assert REGISTRY.get_sample_value("streamae_dead_letter_reasons_total", {"reason": code}) is not None
    before = value("streamae_dead_letter_reasons_total", reason="key_too_long")
    other = value("streamae_dead_letter_reasons_total", reason="other")
    metrics.dead_letter("key_too_long")
    metrics.dead_letters({"key_too_long": 2, "made_up": 1, "invalid_json": 0})
    assert value("streamae_dead_letter_reasons_total", reason="key_too_long") == before + 3
    assert value("streamae_dead_letter_reasons_total", reason="other") == other + 1
    assert REGISTRY.get_sample_value("streamae_dead_letter_reasons_total", {"reason": "made_up"}) is None


def test_lag_delivery_failures_model_and_reloads():
    p = Partition("lagtest", 3)
    metrics.consumer_lag(p, 42)
    assert value("streamae_consumer_lag", topic="lagtest", partition="3") == 42
    metrics.consumer_lag(p, -5)  # a stale high watermark never shows negative lag
    assert value("streamae_consumer_lag", topic="lagtest", partition="3") == 0
    metrics.forget_partitions([p, Partition("lagtest", 9)])  # one never had a lag
    assert REGISTRY.get_sample_value("streamae_consumer_lag", {"topic": "lagtest", "partition": "3"}) is None

    before = value("streamae_delivery_failures_total", topic="out")
    metrics.delivery_failed("out", 2)
    assert value("streamae_delivery_failures_total", topic="out") == before + 2

    ok, refused = (value("streamae_model_reloads_total", result=r) for r in ("ok", "refused"))
    metrics.model_loaded("v1", "dense")
    assert value("streamae_model_info", version="v1", variant="dense") == 1
    metrics.model_reloaded(False, "v2", "dense")  # refused: v1 serves on
    assert value("streamae_model_info", version="v1", variant="dense") == 1
    metrics.model_reloaded(True, "v3", "conv")
    assert value("streamae_model_info", version="v3", variant="conv") == 1
    assert REGISTRY.get_sample_value("streamae_model_info", {"version": "v1", "variant": "dense"}) is None
    assert value("streamae_model_reloads_total", result="ok") == ok + 1
    assert value("streamae_model_reloads_total", result="refused") == refused + 1

    metrics.inference(0.004, 128)
    assert value("streamae_inference_seconds_bucket", le="0.005") >= 1


def test_ages_are_computed_at_scrape_time():
    import time

    metrics.committed(time.monotonic() - 30)
    metrics.polled(time.monotonic() - 2)
    assert 30 <= value("streamae_seconds_since_commit") < 40
    assert 2 <= value("streamae_seconds_since_poll") < 10
    metrics.committed()
    assert value("streamae_seconds_since_commit") < 5


def test_every_metric_is_documented_in_operations_md():
    text = DOCS.read_text()
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("streamae_")}
    documented = set(re.findall(r"`(streamae_[a-z_]+)", text))
    missing = {
        f
        for f in families
        if not any(d in (f, f + "_total", f + "_info", f + "_seconds") for d in documented)
    }
    assert not missing, f"not in docs/operations.md: {sorted(missing)}"


def test_every_dead_letter_reason_code_is_documented():
    text = DOCS.read_text()
    for code in metrics.REASON_CODES:
        if code != "other":  # the metric's label for a code the list does not know
            assert f"`{code}`" in text, code
