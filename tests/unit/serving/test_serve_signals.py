"""``streamae serve`` ends cleanly on SIGTERM even before it serves (bundle load, broker wait)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_while_waiting_for_the_broker_exits_zero(tiny_bundle: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAE_")}
    env.update(
        # nothing listens there: serve waits for a broker (up to 30 s) after loading the bundle
        STREAMAE_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{_unused_port()}",
        STREAMAE_MODEL__PROVIDERS='["CPUExecutionProvider"]',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamae", "serve", "--bundle", str(tiny_bundle)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the bundle is loaded: the broker wait comes next
            lines.append(line)
            if "providers in use" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, out
    assert "signal SIGTERM" in out and "stopped during start-up" in out
    assert "Traceback" not in out
