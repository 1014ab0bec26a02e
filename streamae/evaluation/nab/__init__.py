"""Numenta Anomaly Benchmark (NAB 1.1) scoring.

A faithful re-implementation of NAB's scorer: ``nab/sweeper.py`` (per-row weights and the
one-pass threshold sweep), ``nab/optimizer.py`` (one threshold per detector and profile over
the whole corpus), ``nab/runner.py::normalize`` (null / perfect normalisation) and
``config/profiles.json`` (cost matrices). Rules, with the NAB function each comes from:

* The first ``probation_rows(n)`` rows of a series are not scored (``Sweeper._getProbationaryLength``).
* A row inside a label window, if detected, is worth ``A_tp * S(p) / S(-1)`` with
  ``p = -(right - i + 1) / width``: exactly ``A_tp`` at the window's first row, ``S(-1/width)/S(-1)``
  at its last. Only the best (= earliest) detected row of a window counts; a window with no
  detected scored row costs ``-A_fn`` (``Sweeper.calcSweepScore`` / ``calcScoreByThreshold``).
* A detected row outside every window costs ``A_fp * S((i - prev_right) / (prev_width - 1))``
  relative to the closest preceding window, or ``-A_fp`` when no window precedes it.
* A row is a detection when ``score >= threshold`` (``util.convertAnomalyScoresToDetections``).
* Normalised score ``100 * (raw - null) / (perfect - null)``: ``null`` is what a detector that
  never fires scores, ``perfect = A_tp * number of label windows`` (``Runner.normalize``).

The modules: ``corpus`` (series, label windows, NAB's files), ``rules`` (profiles and the
score of one threshold) and ``optimiser`` (the best threshold over a corpus). Their public names
are imported here: ``from streamae.evaluation.nab import sweep_profiles``.
"""

from streamae.evaluation.nab.corpus import WINDOWS_FILE, Series, load_corpus
from streamae.evaluation.nab.optimiser import SweepResult, sweep, sweep_profiles
from streamae.evaluation.nab.rules import (
    PROBATION_PERCENT,
    PROFILES,
    CostMatrix,
    RowWeights,
    normalise,
    null_score,
    perfect_score,
    probation_rows,
    row_weights,
    scaled_sigmoid,
    score_corpus,
    score_detections,
)

__all__ = [
    "PROBATION_PERCENT",
    "PROFILES",
    "WINDOWS_FILE",
    "CostMatrix",
    "RowWeights",
    "Series",
    "SweepResult",
    "load_corpus",
    "normalise",
    "null_score",
    "perfect_score",
    "probation_rows",
    "row_weights",
    "scaled_sigmoid",
    "score_corpus",
    "score_detections",
    "sweep",
    "sweep_profiles",
]
