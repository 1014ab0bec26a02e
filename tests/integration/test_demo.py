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


def test_transaction_demo_alerts_name_the_account_and_the_field(kafka_bootstrap: str, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
    env.update(
        STREAMAE_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
        STREAMAE_MODEL__PROVIDERS='["CPUExecutionProvider"]',
    )
    cmd = [sys.executable, "-m", "streamae", "demo", "--kind", "transactions", "--epochs", "8"]
    cmd += ["--workdir", str(tmp_path / "run")]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    manifest = json.loads((tmp_path / "run" / "bundle" / "manifest.json").read_text())
    kinds = {f["name"]: f["kind"] for f in manifest["fields"]}
    assert kinds == {
        "amount": "numeric",
        "merchant_category": "categorical",
        "country": "categorical",
        "channel": "categorical",
    }
    # an alert names the account and the input fields that made it odd, never a one-hot column
    opened = re.findall(r"ALERT OPEN  (acct-\d{4}) .* top: (.*)$", out, re.M)
    assert opened, out[-4000:]
    fields = {f.rsplit(" ", 1)[0] for _, top in opened for f in top.split(", ")}
    assert fields <= {"amount", "merchant_category", "country", "channel", "timing"}, fields
    summary = dict(re.findall(r"^ {6}([a-z ]+?)\s{2,}(\S.*)$", out, re.M))
    assert summary["dead letters"] == "2"  # invalid JSON, and a number for the categorical country
    assert "(not_a_category)" in out
    caught, injected = map(int, summary["anomalies caught"].split(" / "))
    assert injected == 40 and caught >= 20  # one fraud per account; 27 caught when written
    assert int(summary["false alerts"]) <= 2
    by_kind = dict(re.findall(r"(\w+) (\d+)/8", summary["caught by kind"]))
    assert int(by_kind["new_country"]) >= 6 and int(by_kind["amount_spike"]) >= 5
