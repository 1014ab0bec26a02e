"""`streamae serve` wires health, metrics, JSON logs and secret masking: checked on a real
process during start-up (bundle loaded, no broker yet), then stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_serve_answers_health_and_masks_secrets_while_starting(tiny_bundle: Path, tmp_path: Path):
    port = _unused_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
    env.update(
        # nothing listens there: serve waits for a broker (up to 30 s) after loading the bundle
        STREAMAE_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{_unused_port()}",
        STREAMAE_KAFKA__SECURITY_PROTOCOL="SASL_PLAINTEXT",
        STREAMAE_KAFKA__SASL_MECHANISM="SCRAM-SHA-512",
        STREAMAE_KAFKA__SASL_USERNAME="streamae",
        STREAMAE_KAFKA__SASL_PASSWORD="never-print-me",
        STREAMAE_MODEL__PROVIDERS='["CPUExecutionProvider"]',
        STREAMAE_METRICS_PORT=str(port),
        STREAMAE_METRICS_HOST="127.0.0.1",
        STREAMAE_LOG_FORMAT="json",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamae", "serve", "--bundle", str(tiny_bundle)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the bundle is loaded: the broker wait comes next
            lines.append(line)
            if "providers in use" in line:
                break
        time.sleep(0.5)
        live, _ = _get(port, "/healthz")
        ready, body = _get(port, "/ready")
        metrics_status, metrics = _get(port, "/metrics")
        missing, _ = _get(port, "/nothing")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, out
    assert live == 200  # starting up is alive
    assert ready == 503  # ... but not ready: model loaded, group not joined yet
    checks = json.loads(body)["checks"]
    assert checks["model"]["ok"] and not checks["group"]["ok"]
    assert metrics_status == 200 and b"streamae_model_info{" in metrics and missing == 404
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    (settings_line,) = [r for r in records if r["message"].startswith("settings: ")]
    assert '"sasl_password":"**********"' in settings_line["message"]
    assert "never-print-me" not in out and "Traceback" not in out
