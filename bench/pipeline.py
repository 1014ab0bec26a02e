"""End to end on the real local broker: readings produced → daemon → scores acknowledged."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, Result, train_bundle

from streamae.core.bundle import load_bundle
from streamae.core.config import Settings
from streamae.core.scoring import Scorer
from streamae.demo.simulate import simulate, to_messages
from streamae.serving.backends import open_transport
from streamae.serving.kafka_admin import ensure_daemon_topics, follow, publish
from streamae.serving.loop import Daemon

PORT = 19392


def run() -> list[Result]:
    data = Path(tempfile.mkdtemp(prefix="streamae-bench-kafka-"))
    script = ROOT / "deploy" / "kafka.sh"
    # the broker is infrastructure, not the system under test: let it use every core
    everywhere = set(range(os.cpu_count() or 1))
    subprocess.run(
        ["bash", str(script), "start", str(PORT), str(data)],
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, everywhere),
    )
    try:
        return _measure(f"127.0.0.1:{PORT}")
    finally:
        subprocess.run(["bash", str(script), "stop", str(data)], check=False)


def _measure(bootstrap: str) -> list[Result]:
    bundle = train_bundle(Path(tempfile.gettempdir()) / "streamae-bench-bundle")
    out = []
    for per_message in (1, 20):
        run = f"b{int(time.time() * 1000)}"
        topics = {
            "input_topic": f"{run}.in",
            "scores_topic": f"{run}.scores",
            "alerts_topic": f"{run}.alerts",
            "dlq_topic": f"{run}.dlq",
            "state_topic": f"{run}.state",
            "group_id": run,
        }
        s = Settings(kafka={"bootstrap_servers": bootstrap, **topics})
        ensure_daemon_topics(s.kafka)
        frame = simulate(entities=20, duration_s=3 * 86400, anomalies_per_entity=0, seed=5).frame
        publish(s.kafka, to_messages(frame, per_message))  # backlog first: measure the daemon
        expected = int(sum(n - 29 for n in frame.groupby("key").size()))
        scorer = Scorer(load_bundle(bundle), ["CPUExecutionProvider"], intra_op_threads=1)
        daemon = Daemon(s, scorer, open_transport(s))
        t = time.perf_counter()
        thread = threading.Thread(target=daemon.run)
        thread.start()
        while daemon.stats.windows < expected:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t
        daemon.stop()
        thread.join()
        published = sum(1 for _ in follow(s.kafka, [s.kafka.scores_topic], lambda: False, 10))
        assert published == expected, (published, expected)
        out.append(
            Result(
                f"daemon end to end, {per_message} reading(s)/message, backlog of {len(frame)}",
                len(frame) / elapsed,
                "readings/s",
                f"{expected / elapsed:,.0f} windows/s published and committed",
            )
        )
    return out
