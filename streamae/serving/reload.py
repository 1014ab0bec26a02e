"""Hot model reload: switch to a new bundle without a restart, or keep the old one.

Every ``STREAMAE_MODEL__RELOAD_INTERVAL_S`` the daemon looks at its bundle location (a
directory, or a link such as ``current`` → ``bundles/v7``): the resolved path and the
identity (inode, size, modification time) of its manifest and model. When they change, the new bundle is
validated fully before anything switches: checksums of the manifest and the model
(``load_bundle``), ONNX Runtime loads the graph, the features, window and stride equal the
running model's (windows in flight were cut for it), and one warm-up inference on zeros
gives finite scores. The loop switches between micro-batches; on any failure the old model
keeps serving, with one ERROR line naming the bundle and the reason (and the same bundle
is not tried again until it changes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamae.core.bundle import MANIFEST, MODEL, BundleError
from streamae.core.config import Settings
from streamae.core.registry import incompatible
from streamae.core.scoring import Scorer
from streamae.serving.health import metrics

log = logging.getLogger(__name__)

Fingerprint = tuple[str, tuple[int, ...]] | None


def fingerprint(location: Path) -> Fingerprint:
    """What identifies the bundle at ``location`` now (None: no readable bundle there)."""
    try:
        resolved = location.resolve(strict=True)
        stats = [os.stat(resolved / name) for name in (MANIFEST, MODEL)]
    except OSError:
        return None
    return str(resolved), tuple(x for st in stats for x in (st.st_ino, st.st_size, st.st_mtime_ns))


def warm_up(scorer: Scorer) -> None:
    """One inference on a window of zeros; raises when it fails or is not finite."""
    m = scorer.manifest
    scores = scorer.score(np.zeros((1, m.window, len(m.features)), dtype=np.float32)).scores
    if not np.isfinite(scores).all():
        raise BundleError(f"warm-up inference gave {scores.tolist()}")


class ModelReloader:
    """Watches one bundle location and hands the loop a validated new :class:`Scorer`."""

    def __init__(
        self,
        location: Path,
        settings: Settings,
        current: Scorer,
        clock: Callable[[], float] = time.monotonic,
        load: Callable[[Path, Settings], Scorer] = Scorer.load,
    ) -> None:
        self.location, self.settings, self.current = location, settings, current
        self.interval_s = settings.model.reload_interval_s
        self._clock, self._load = clock, load
        self._seen = fingerprint(location)
        self._next = clock() + self.interval_s
        self.reloads = 0
        self.failures = 0

    def poll(self) -> Scorer | None:
        """A new scorer when the bundle changed and passes every check; None otherwise."""
        now = self._clock()
        if not self.interval_s or now < self._next:
            return None
        self._next = now + self.interval_s
        seen = fingerprint(self.location)
        if seen == self._seen or seen is None:  # unchanged, or mid-swap: look again later
            return None
        self._seen = seen
        old = self.current.manifest.model_version
        try:
            scorer = self._load(self.location, self.settings)
            if (why := incompatible(scorer.manifest, self.current.manifest)) is not None:
                raise BundleError(why)
            warm_up(scorer)
        except Exception as exc:  # whatever is wrong with it, the old model goes on serving
            self.failures += 1
            metrics.model_reloaded(False)
            log.error("model reload: %s (%s) refused, still serving %s: %s", self.location, seen[0], old, exc)
            return None
        self.current = scorer
        self.reloads += 1
        metrics.model_reloaded(True, scorer.manifest.model_version, scorer.manifest.variant)
        log.info("model reload: serving %s from %s (was %s)", scorer.manifest.model_version, seen[0], old)
        return scorer
