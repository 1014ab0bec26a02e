"""``streamae calibrate``: a new threshold for an existing bundle, without retraining.

alibi-detect's ``infer_threshold``: the model, scaler and per-feature statistics stay as
they are; only the manifest's ``threshold`` (and the metrics describing its scores)
change. The bundle is rewritten atomically, in place or to a new folder.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from streamae.core.bundle import MANIFEST, Bundle, BundleError, write_bundle
from streamae.core.config import Settings, load_settings
from streamae.core.readings import DataError
from streamae.core.scoring import Scorer
from streamae.training.calibration import ThresholdRule, calibrate_scorer, score_summary
from streamae.training.fit import TRAINING_PLOT
from streamae.training.history import normal_history

RECALIBRATED = "+recal"  # model_version suffix of a recalibrated bundle, then its UTC time


def recalibrate(
    bundle: Bundle,
    frame: pd.DataFrame,
    rule: ThresholdRule,
    ewma_alpha: float,
    out: Path | None = None,
    source: str = "normal",
    settings: Settings | None = None,
) -> Bundle:
    """``bundle`` with a threshold set by ``rule`` on every window of the normal readings
    ``frame`` (windows touching a labelled row left out), written to ``out`` (default: in
    place); the model is unchanged.

    The windows are scored by the Scorer the new bundle serves with (``settings``'
    providers, threads and batch size; ``ewma_alpha`` smoothing). The manifest records the
    new threshold and its scores' median and maximum, a ``model_version`` ending in
    ``+recal<UTC time>`` so score messages tell the thresholds apart, and
    ``training.recalibration``: when, from what, and the previous threshold.
    """
    m = bundle.manifest
    out = Path(out) if out is not None else bundle.path
    if out.exists() and not (out / MANIFEST).is_file():
        raise BundleError(f"{out}: exists and is no bundle; name a new folder or a bundle to replace")
    windows = normal_history(frame, m.encoding(), m.window, m.stride, source).windows
    if not len(windows):
        raise DataError(f"{source}: no complete window of {m.window} normal readings to calibrate on")
    smoothing = m.threshold.model_copy(update={"ewma_alpha": ewma_alpha})
    target = Bundle(bundle.path, m.model_copy(update={"threshold": smoothing}), bundle.model_bytes)
    scorer = Scorer.configured(target, settings or load_settings())
    try:
        threshold, scores = calibrate_scorer(scorer, windows, rule)
    except ValueError as exc:
        raise DataError(f"{source}: threshold calibration on {len(windows)} windows failed: {exc}") from None
    now = datetime.now(timezone.utc)
    fields = m.model_dump(exclude={"checksum", "extras"})
    fields["model_version"] = f"{m.model_version.split(RECALIBRATED)[0]}{RECALIBRATED}{now:%Y%m%dT%H%M%S}"
    fields["threshold"] = threshold
    fields["metrics"] = {**m.metrics, **score_summary(scores)}
    fields["training"] = {
        **m.training,
        "recalibration": {"at": now.isoformat(), "source": source, "previous": m.threshold.model_dump()},
    }
    extras = {name: bundle.extra(name) for name in m.extras}
    plot = bundle.path / TRAINING_PLOT
    curve = plot.read_bytes() if plot.is_file() else None
    written = write_bundle(out, bundle.model_bytes, fields, extras=extras)
    if curve is not None:  # the rewrite replaced the folder; the training curve still holds
        (out / TRAINING_PLOT).write_bytes(curve)
    return written
