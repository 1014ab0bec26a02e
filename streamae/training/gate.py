"""The promotion gate: a retrained model replaces the current one only when it is not worse.

Both models are judged on the most recent stretch of history, which neither trained on: the
false-alarm rate at each one's own threshold on its normal readings, and the F1 on copies of
it with injected faults (the same faults for both, as label-free selection injects them).
The new model passes when its false-alarm rate is at most the current one's plus
``far_margin`` and its F1 at least the current one's minus ``f1_margin``, and when a running
daemon could swap to it (same features, window and stride).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from streamae.core.offline import score_frame
from streamae.core.registry import incompatible
from streamae.core.scoring import Scorer
from streamae.training.faulted_stream import faulted_validation
from streamae.training.selection import judge

FAR_MARGIN = 0.005  # absolute: half a percentage point of windows more over threshold
F1_MARGIN = 0.05


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    numbers: dict[str, Any]  # what the registry records and the job prints


def judge_models(
    new: Scorer,
    old: Scorer | None,
    frame: pd.DataFrame,
    after: float,
    seed: int = 0,
    far_margin: float = FAR_MARGIN,
    f1_margin: float = F1_MARGIN,
) -> Verdict:
    """The gate's verdict on ``new`` against ``old`` (None: no current version) on the rows of
    ``frame`` after ``after`` (earlier rows give the faults their context; a ``label`` column
    marks rows that are not normal, such as readings near an alert)."""
    if old is None:
        return Verdict(True, "first version", {})
    why_not = incompatible(new.manifest, old.manifest)
    if why_not:
        return Verdict(False, f"a running daemon could not swap to it: {why_not}", {})
    normal = frame["label"].to_numpy() == 0 if "label" in frame else np.ones(len(frame), bool)
    recent = frame[(frame["timestamp"].to_numpy() > after) & normal].drop(columns=["label"], errors="ignore")
    readings = new.encoding.readings(frame, "gate")
    context = max(new.manifest.window, old.manifest.window) - 1
    stream = faulted_validation(readings, normal, new.encoding, after, np.inf, context, seed)
    numbers: dict[str, Any] = {"recent_readings": len(recent), "faults": stream.faults}
    for name, scorer in (("new", new), ("old", old)):
        scored = score_frame(recent, scorer, "gate")
        windows, labels = stream.windows(scorer.encoding, scorer.manifest.window, scorer.manifest.stride)
        _, final = scorer.stream(windows)
        numbers[f"{name}_false_alarm_rate"] = float(scored["is_anomaly"].mean()) if len(scored) else 0.0
        numbers[f"{name}_fault_f1"] = judge(labels, final, scorer.threshold)["f1"]
    numbers |= {"far_margin": far_margin, "f1_margin": f1_margin}
    far_ok = numbers["new_false_alarm_rate"] <= numbers["old_false_alarm_rate"] + far_margin
    f1_ok = numbers["new_fault_f1"] >= numbers["old_fault_f1"] - f1_margin
    n = numbers
    summary = (
        f"false alarms {100 * n['new_false_alarm_rate']:.2f} % vs {100 * n['old_false_alarm_rate']:.2f} %, "
        f"fault F1 {n['new_fault_f1']:.3f} vs {n['old_fault_f1']:.3f}"
    )
    if far_ok and f1_ok:
        return Verdict(True, f"not worse than the current version: {summary}", numbers)
    return Verdict(False, f"worse than the current version: {summary}", numbers)
