"""The detector contract: what serving, evaluation and calibration need from a model.

In the spirit of River (``learn_one`` / ``score_one``) and PyOD (``fit`` /
``decision_function``), the contract is small and splits the three jobs apart:

1. **fit** on normal windows: the trainer's job (``streamae.training.fit.fit``), which
   ends in a bundle; a serving process never fits.
2. **score** windows: :meth:`Detector.decision_function`, raw windows ``(m, window, F)``
   in data units → one score per window ``(m,)``, higher = more anomalous.
3. **calibrate** the threshold: a separate step (``streamae.training.calibration``) that
   scores held-out normal windows through this same method and picks the alert level.

:class:`streamae.core.scoring.Scorer` is the detector of a bundle.

Example::

    >>> from streamae.core.detector import Detector
    >>> from streamae.core.scoring import Scorer
    >>> issubclass(Scorer, Detector)
    True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Detector(Protocol):
    """Scores windows; higher = worse; alerts above :attr:`threshold`.

    A bundle may smooth scores per key before they meet the threshold (EWMA, see
    :meth:`streamae.core.scoring.Scorer.smooth`); without smoothing, a window is anomalous
    when ``decision_function(windows) > threshold``.
    """

    @property
    def threshold(self) -> float:
        """The calibrated alert level, in the units of :meth:`decision_function`."""
        ...

    def decision_function(self, windows: np.ndarray) -> np.ndarray:
        """Anomaly scores ``(m,)`` (float64, finite, >= 0) of raw windows ``(m, window, F)``."""
        ...
