"""The README's main job, ``streamae demo``, as a user runs it: a process on the real broker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka


def test_demo_selects_a_detector_streams_and_prints_alerts_and_the_summary(
    kafka_bootstrap: str, tmp_path: Path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
    env.update(
        STREAMAE_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
        STREAMAE_MODEL__PROVIDERS='["CPUExecutionProvider"]',
    )
    cmd = [sys.executable, "-m", "streamae", "demo", "--workdir", str(tmp_path / "run"), "--entities", "2"]
    cmd += ["--hours", "16", "--epochs", "8"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # automatic selection, as `streamae train` does by default, not a pinned variant
    assert re.search(r"selected \w+ w\d+", out), out[-4000:]
    assert "ALERT OPEN" in out and "ALERT CLOSE" in out
    summary = dict(re.findall(r"^ {6}([a-z ]+?)\s{2,}(\S.*)$", out, re.M))
    readings = int(summary["readings published"])
    assert readings == 2 * 16 * 60  # one reading a minute per machine
    assert summary["dead letters"] == "2"  # the two malformed records, each with its reason
    manifest = json.loads((tmp_path / "run" / "bundle" / "manifest.json").read_text())
    window, stride = manifest["window"], manifest["stride"]
    assert int(summary["windows scored"]) == 2 * ((readings // 2 - window) // stride + 1)
    caught, injected = map(int, summary["anomalies caught"].split(" / "))
    assert injected == 4 and caught >= 3  # two anomalies per machine in 16 hours
    assert (tmp_path / "run" / "scores.png").stat().st_size > 10_000
    # a progress bar written to a pipe is a line per stage, not carriage-return frames
    assert "\r" not in out
