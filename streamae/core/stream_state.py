"""What a stream of windows carries per key from one :meth:`Scorer.stream
<streamae.core.scoring.Scorer.stream>` call to the next: the EWMA of its scores, the
post-processing state (``core/postprocess.py``) and the streaming normalisation statistics
(``core/adapt.py``). JSON-ready dicts, saved with the alert state at each commit, restored
after a restart and forgotten with idle keys, so a restart continues every stage exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamae.core import postprocess

#: the key under which a saved state's ``post`` holds the normalisation statistics (the saved
#: form predates this class: bundles' and daemons' saved states stay readable both ways)
ADAPT_KEY = "adapt"


@dataclass
class StreamState:
    smoothing: dict[str, float] = field(default_factory=dict)  # key -> last EWMA score
    post: postprocess.PostState = field(default_factory=postprocess.new_state)  # stage -> key -> value
    adapt: dict[str, list[float]] = field(default_factory=dict)  # key -> adapt.Adapter's row

    def forget(self, keys: list[str]) -> None:
        """Drop every stage's state of ``keys`` (idle keys), so the state stays bounded."""
        for key in keys:
            self.smoothing.pop(key, None)
            self.adapt.pop(key, None)
        postprocess.forget(self.post, keys)

    def saved(self) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        """Copies for the state store: ``(smoothing, post)``, normalisation inside ``post``."""
        post = {part: dict(values) for part, values in self.post.items()}
        if self.adapt:
            post[ADAPT_KEY] = dict(self.adapt)
        return dict(self.smoothing), post

    def update(self, smoothing: dict[str, float], post: dict[str, dict[str, Any]]) -> None:
        """Continue from a saved ``(smoothing, post)`` (see :meth:`saved`)."""
        self.smoothing.update(smoothing)
        for part, values in post.items():
            (self.adapt if part == ADAPT_KEY else self.post.setdefault(part, {})).update(values)
