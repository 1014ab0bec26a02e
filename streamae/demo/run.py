"""End-to-end demo on a real broker: simulate → train → serve → stream → print alerts → summary."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from streamae.core.config import Settings, TrainSettings
from streamae.core.manifest import Manifest
from streamae.demo.scenarios import Scenario, reach
from streamae.demo.simulate import DAY_S, Anomaly, to_messages
from streamae.evaluation.plots import plot_scores
from streamae.serving.assembly import build_daemon
from streamae.serving.clients.admin import follow, publish
from streamae.serving.loop import DaemonStats
from streamae.training.fit import fit


@dataclass(frozen=True)
class DemoSummary:
    readings: int
    dead_letters: int
    windows_scored: int
    alerts: int
    anomalies: int
    caught: int
    false_alerts: int
    daemon: DaemonStats
    by_kind: dict[str, tuple[int, int]]  # anomaly kind: (caught, injected)

    def lines(self) -> list[str]:
        return [
            f"readings published     {self.readings}",
            f"dead letters           {self.dead_letters}",
            f"windows scored         {self.windows_scored}",
            f"alerts opened          {self.alerts}",
            f"anomalies caught       {self.caught} / {self.anomalies}",
            f"false alerts           {self.false_alerts}",
            "caught by kind         " + ", ".join(f"{k} {c}/{n}" for k, (c, n) in self.by_kind.items()),
        ]


def match_alerts(
    anomalies: list[Anomaly], reaches: list[float], alerts: list[tuple[str, float, float]]
) -> tuple[list[bool], int]:
    """(whether each anomaly is caught, false alerts). An alert catches an anomaly of its key
    when its span overlaps the anomaly's span extended to its reach (while a window holds it)."""
    spans = list(zip(anomalies, reaches))

    def overlaps(a: Anomaly, until: float, al: tuple[str, float, float]) -> bool:
        return al[0] == a.key and al[1] <= until and al[2] >= a.start

    caught = [any(overlaps(a, r, al) for al in alerts) for a, r in spans]
    false = sum(not any(overlaps(a, r, al) for a, r in spans) for al in alerts)
    return caught, false


def _fmt_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def format_alert(event: dict) -> str:
    top = ", ".join(f"{f['feature']} {100 * f['share']:.0f}%" for f in event["top_features"])
    ratio = event["peak_score"] / event["threshold"]
    when = _fmt_time(event["start"]) + (f" → {_fmt_time(event['end'])}" if event["end"] else "")
    return (
        f"ALERT {event['event'].upper():5s} {event['key']}  {when}  {event['severity']:8s} "
        f"peak {ratio:5.1f}× threshold  top: {top}"
    )


def run_demo(
    settings: Settings,
    workdir: Path,
    scenario: Scenario,
    *,
    seed: int = 7,
    epochs: int = 40,
    timeout_s: float = 300,
    say: Callable[[str], None] = print,
) -> DemoSummary:
    """Run the whole demo of ``scenario`` against ``settings.kafka.bootstrap_servers``."""
    workdir.mkdir(parents=True, exist_ok=True)
    history, stream = scenario.history.frame, scenario.stream.frame
    span = (history["timestamp"].max() - history["timestamp"].min()) / DAY_S
    say(f"[1/5] simulated {span:.0f} days of normal history for {history['key'].nunique()} {scenario.noun}")
    history.to_csv(workdir / "history.csv", index=False)
    m = _train(history, workdir / "bundle", TrainSettings(variant="auto", epochs=epochs, seed=seed), say)

    settings = _demo_settings(settings, workdir / "bundle")
    k = settings.kafka
    say(f"[3/5] starting the daemon on {k.bootstrap_servers}, topic {k.input_topic}")
    daemon = build_daemon(settings, create_topics=True)
    thread = threading.Thread(target=daemon.run, name="streamae-daemon", daemon=True)
    thread.start()

    stream.to_csv(workdir / "stream.csv", index=False)
    say(
        f"[4/5] streaming {len(stream)} readings with {len(scenario.stream.anomalies)} injected "
        f"anomalies (and {len(scenario.malformed)} malformed records)"
    )
    publish(k, [*to_messages(stream), *scenario.malformed])
    counts = stream.groupby("key").size()
    expected = int(sum(max(0, (n - m.window) // m.stride + 1) for n in counts))
    scores, alerts = _follow(settings, expected, timeout_s, say)
    daemon.stop()
    thread.join(timeout=60)
    return _summarise(scenario, scores, alerts, m, daemon.stats, workdir, say)


def _train(history: pd.DataFrame, bundle: Path, cfg: TrainSettings, say: Callable[[str], None]) -> Manifest:
    """What ``streamae train`` does by default: choose the detector without labels, then fit."""
    say("[2/5] training on it (normal data only), the detector chosen automatically as `streamae train` does")
    result = fit(history.drop(columns=["label", "anomaly_type"]), bundle, cfg, "history.csv")
    m = result.bundle.manifest
    if m.selection is not None:
        say(f"      selected {m.selection.candidates[m.selection.chosen].settings.describe()}")
    say(
        f"      bundle {bundle}: threshold {m.threshold.value:.4g} "
        f"({m.threshold.method} {m.threshold.params} on {m.threshold.calibration_windows} held-out windows)"
    )
    return m


def _demo_settings(settings: Settings, bundle: Path) -> Settings:
    """Fresh topics and group for this run (a rerun starts clean), serving ``bundle``."""
    run = f"{int(time.time())}"
    k = settings.kafka.model_copy(
        update={
            t: f"streamae.demo.{run}.{t.removesuffix('_topic')}"
            for t in ("input_topic", "scores_topic", "alerts_topic", "dlq_topic", "state_topic")
        }
        | {"group_id": f"streamae-demo-{run}"}
    )
    return settings.model_copy(
        update={"kafka": k, "model": settings.model.model_copy(update={"bundle": bundle})}
    )


def _summarise(
    scenario: Scenario,
    scores: pd.DataFrame,
    alerts: list[dict],
    m: Manifest,
    stats: DaemonStats,
    workdir: Path,
    say: Callable[[str], None],
) -> DemoSummary:
    stream = scenario.stream
    spans = _alert_spans(alerts, scores)
    hits, false = match_alerts(stream.anomalies, reach(stream, stream.anomalies, m.window), spans)
    plotted = scores[scores["key"].isin(scenario.plotted_keys())]
    plot = plot_scores(
        plotted,
        workdir / "scores.png",
        stream.anomalies_frame(),
        spans,
        title=f"demo: {m.variant} autoencoder",
    )
    summary = DemoSummary(
        readings=len(stream.frame),
        dead_letters=stats.dead_letters,
        windows_scored=len(scores),
        alerts=sum(a["event"] == "open" for a in alerts),
        anomalies=len(stream.anomalies),
        caught=sum(hits),
        false_alerts=false,
        daemon=stats,
        by_kind={
            kind: (sum(h for a, h in zip(stream.anomalies, hits) if a.kind == kind), n)
            for kind, n in Counter(a.kind for a in stream.anomalies).items()
        },
    )
    say("[5/5] summary")
    for line in summary.lines():
        say("      " + line)
    say(f"      plot: {plot}")
    return summary


def _follow(
    settings: Settings, expected: int, timeout_s: float, say: Callable[[str], None]
) -> tuple[pd.DataFrame, list[dict]]:
    """Read the score and alert topics from the start, printing alerts, until all windows land."""
    k = settings.kafka
    scores: list[dict] = []
    alerts: list[dict] = []
    for topic, doc in follow(
        k, [k.scores_topic, k.alerts_topic], lambda: len(scores) >= expected, timeout_s, settle_ms=1500
    ):
        if topic == k.alerts_topic:
            say("      " + format_alert(doc))
            alerts.append(doc)
        else:
            scores.append(doc)
    if len(scores) < expected:
        say(f"      warning: {len(scores)} of {expected} windows scored before the timeout")
    frame = pd.DataFrame(scores, columns=["key", "window_end", "score", "threshold", "is_anomaly"])
    return frame, alerts


def _alert_spans(alerts: list[dict], scores: pd.DataFrame) -> list[tuple[str, float, float]]:
    """(key, start, end) per alert; an alert still open ends at its key's last score."""
    last = scores.groupby("key")["window_end"].max().to_dict() if len(scores) else {}
    closed = {a["alert_id"]: a["end"] for a in alerts if a["event"] == "close"}
    return [
        (a["key"], a["start"], closed.get(a["alert_id"], last.get(a["key"], a["start"])))
        for a in alerts
        if a["event"] == "open"
    ]
