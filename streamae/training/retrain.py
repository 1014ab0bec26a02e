"""The retraining job: history from the stream (or a file), readings near alerts left out, the
same training as ``streamae train``, then the gate (``gate.py``) and the registry
(``core/registry.py``): the new version is registered always, and promoted when it passes."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from streamae.core.config import Settings, TrainSettings
from streamae.core.readings import DataError, parse_timestamp
from streamae.core.registry import Registry, VersionRecord
from streamae.core.scoring import Scorer
from streamae.training.fit import fit
from streamae.training.gate import Verdict, judge_models

log = logging.getLogger(__name__)

HOLDOUT = 0.2  # the most recent share of the history: not trained on, judged by the gate


@dataclass(frozen=True)
class Outcome:
    record: VersionRecord
    verdict: Verdict
    promoted: bool


def messages_frame(messages: Iterable[tuple[bytes | None, bytes | None]]) -> tuple[pd.DataFrame, int]:
    """Readings of ``(record key, value)`` messages in the reading contract (an object or a
    list of them) as a history frame (timestamp, key, one column per value); and how many
    readings were left out because they are malformed (the daemon dead-letters those)."""
    rows: list[dict[str, Any]] = []
    bad = 0
    for key, value in messages:
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            bad += 1
            continue
        for item in doc if type(doc) is list else [doc]:
            row = _row(item, key)
            if row is None:
                bad += 1
            else:
                rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce")
        kept = frame["timestamp"].notna()
        bad += int((~kept).sum())
        frame = frame[kept].sort_values("timestamp", kind="stable").reset_index(drop=True)
    return frame, bad


def _row(item: Any, record_key: bytes | None) -> dict[str, Any] | None:
    if type(item) is not dict or type(item.get("values")) is not dict:
        return None
    key = item.get("key")
    if type(key) is not str:
        key = record_key.decode("utf-8", "replace") if record_key is not None and key is None else None
    ts = item.get("ts")
    if key is None or isinstance(ts, bool):
        return None
    if isinstance(ts, str):
        try:
            ts = parse_timestamp(ts)  # as the daemon's decoder reads it
        except ValueError:
            ts = None
    return {"timestamp": ts, "key": key, **item["values"]}


def label_alerts(frame: pd.DataFrame, alerts: Sequence[dict[str, Any]], margin_s: float) -> pd.DataFrame:
    """``frame`` with ``label`` 1 on the readings of a key within ``margin_s`` of one of its
    alerts (an alert still open runs to the end), so training leaves their windows out."""
    spans: dict[str, list[tuple[float, float]]] = {}
    closed = {a["alert_id"]: a["end"] for a in alerts if a.get("event") == "close"}
    for a in alerts:
        if a.get("event") == "open":
            end = closed.get(a["alert_id"]) or np.inf
            spans.setdefault(a["key"], []).append((a["start"] - margin_s, end + margin_s))
    label = np.zeros(len(frame), dtype=np.int8)
    ts, keys = frame["timestamp"].to_numpy(), frame["key"].to_numpy()
    for key, ranges in spans.items():
        mine = keys == key
        for lo, hi in ranges:
            label[mine & (ts >= lo) & (ts <= hi)] = 1
    return frame.assign(label=np.maximum(label, frame["label"].to_numpy()) if "label" in frame else label)


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the training readings (row order and values)."""
    return (
        "sha256:"
        + hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
    )


def retrain(
    frame: pd.DataFrame,
    source: str,
    registry: Registry,
    cfg: TrainSettings,
    settings: Settings,
    force: bool = False,
    holdout: float = HOLDOUT,
    progress: bool = True,
) -> Outcome:
    """Train on all but the most recent ``holdout`` of ``frame``, register the bundle, judge it
    against the current version on that recent part, and promote it when it passes (or
    ``force``)."""
    if len(frame) == 0:
        raise DataError(f"{source}: no readings in the range")
    ts = frame["timestamp"].to_numpy(dtype=np.float64)
    after = float(np.quantile(ts, 1 - holdout))
    train = frame[ts <= after]
    normal = int((train["label"] == 0).sum()) if "label" in train else len(train)
    log.info(
        "%s: %d readings (%d normal) to train on, %d recent ones for the gate",
        source,
        len(train),
        normal,
        len(frame) - len(train),
    )
    with tempfile.TemporaryDirectory(prefix="streamae-retrain-") as tmp:
        fit(train, Path(tmp) / "bundle", cfg, source, progress)
        new = Scorer.load(Path(tmp) / "bundle", settings)
        current = registry.current()
        old = Scorer.load(registry.path(current), settings) if current else None
        verdict = judge_models(new, old, frame, after, cfg.seed)
        record = registry.add(
            Path(tmp) / "bundle",
            source,
            data_range=(float(ts.min()), after),
            data_fingerprint=fingerprint(train),
            gate={"passed": verdict.promote, "reason": verdict.reason, **verdict.numbers},
        )
    promote = verdict.promote or force
    if promote:
        why = verdict.reason if verdict.promote else f"forced: {verdict.reason}"
        registry.promote(record.version, why=why, force=force, gate=record.gate)
    return Outcome(record, verdict, promote)
