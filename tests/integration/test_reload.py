"""Hot model reload against the real broker: a new bundle swapped in under load loses no
window and publishes none twice; windows after the switch carry the new model version."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from helpers import (
    DaemonThread,
    assert_same_scores,
    offline_scores,
    read_to_end,
    settings_for,
    wait_published_and_committed,
    wait_until,
)

from streamae.core.bundle import load_bundle, write_bundle
from streamae.demo.simulate import to_messages
from streamae.serving.kafka_admin import publish

pytestmark = pytest.mark.kafka


def test_a_bundle_swapped_under_load_loses_no_window(
    kafka_bootstrap, topics, bundle_dir, make_stream, tmp_path
):
    shutil.copytree(bundle_dir, tmp_path / "v1")
    b = load_bundle(bundle_dir)
    fields = b.manifest.model_dump(exclude={"checksum", "extras", "created_at"}) | {"model_version": "v2"}
    write_bundle(tmp_path / "v2", b.model_bytes, fields)  # the same weights: scores must agree
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "v1")
    s = settings_for(
        kafka_bootstrap, topics, model={"providers": ["CPUExecutionProvider"], "reload_interval_s": 0.5}
    )
    frame = make_stream(hours=6, anomalies=0, seed=33, entities=4).frame
    msgs = list(to_messages(frame))
    with DaemonThread(s, current) as d:

        def feed() -> None:
            for i in range(0, len(msgs), 40):
                publish(s.kafka, msgs[i : i + 40])
                time.sleep(0.2)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: d.daemon.stats.windows > 200)
        (tmp_path / "next").symlink_to(tmp_path / "v2")
        (tmp_path / "next").replace(current)
        feeder.join(120)
        wait_published_and_committed(s.kafka)
        assert d.daemon.health().model_version == "v2" and d.daemon.reloader.reloads == 1
    scores = read_to_end(s.kafka, s.kafka.scores_topic)
    assert_same_scores(scores, offline_scores(bundle_dir, frame))  # each window once
    versions = {m["model_version"] for m in scores}
    assert versions == {b.manifest.model_version, "v2"}
