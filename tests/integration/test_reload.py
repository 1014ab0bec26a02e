"""Hot model reload against the real broker, on ``streamae serve`` as a user starts it: a new
bundle swapped in under load loses no window and publishes none twice; windows after the
switch carry the new model version."""

from __future__ import annotations

import collections
import shutil
import threading
import time

import pytest
from helpers import (
    Served,
    assert_same_scores,
    offline_scores,
    read_to_end,
    serve_logs,
    settings_for,
    wait_published_and_committed,
    wait_until,
)

from streamae.core.bundle import load_bundle, write_bundle
from streamae.demo.simulate import to_messages
from streamae.serving.clients.admin import ensure_daemon_topics, publish

pytestmark = pytest.mark.kafka


def test_serve_follows_the_current_link_and_swaps_bundles_under_load_losing_no_window(
    kafka_bootstrap, topics, bundle_dir, make_stream, tmp_path, backend
):
    shutil.copytree(bundle_dir, tmp_path / "v1")
    b = load_bundle(bundle_dir)
    fields = b.manifest.model_dump(exclude={"checksum", "extras", "created_at"}) | {"model_version": "v2"}
    write_bundle(tmp_path / "v2", b.model_bytes, fields)  # the same weights: scores must agree
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "v1")
    s = settings_for(kafka_bootstrap, topics, backend)
    ensure_daemon_topics(s.kafka)
    frame = make_stream(hours=6, anomalies=0, seed=33, entities=4).frame
    msgs = list(to_messages(frame))
    with Served(
        kafka_bootstrap, topics, current, tmp_path, backend=backend, STREAMAE_MODEL__RELOAD_INTERVAL_S="0.5"
    ) as served:

        def feed() -> None:
            for i in range(0, len(msgs), 40):
                publish(s.kafka, msgs[i : i + 40])
                time.sleep(0.2)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: len(read_to_end(s.kafka, s.kafka.scores_topic)) > 200)
        (tmp_path / "next").symlink_to(tmp_path / "v2")
        (tmp_path / "next").replace(current)  # an atomic switch of the link
        feeder.join(120)
        wait_published_and_committed(s.kafka)
        assert served.stop() == 0
    log = serve_logs(tmp_path)
    assert "hot reload every 0.5 s" in log
    assert f"model reload: serving v2 from {tmp_path / 'v2'} (was {b.manifest.model_version})" in log
    scores = read_to_end(s.kafka, s.kafka.scores_topic)
    assert_same_scores(scores, offline_scores(bundle_dir, frame))  # each window once
    assert {m["model_version"] for m in scores} == {b.manifest.model_version, "v2"}
    by_partition = collections.defaultdict(list)
    for m in sorted(scores, key=lambda m: m["source"]["offset_end"]):
        by_partition[m["source"]["partition"]].append(m["model_version"])
    for versions in by_partition.values():  # on each partition: the old model, then only the new
        assert versions == sorted(versions, key=lambda v: v == "v2")
