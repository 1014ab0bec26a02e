"""Score outputs in the form ``STREAMAE_OUTPUT__SCORES`` chooses, built from arrays.

- ``all`` (the default contract): one score message per window (``messages.ScoreMessage``).
- ``above``: the same messages, only for windows whose score reaches ``above_fraction`` ×
  threshold.
- ``batch``: one message per key per micro-batch with one array per field
  (``messages.ScoreBatchMessage``), serialised by orjson straight from numpy, no Python
  object per window; one larger than ``max_message_bytes`` is split in halves.

Whatever the form, the alert policy sees every window: alerts are never thinned. It is fed
per-window dicts; a window under the threshold can never become an alert's peak, so in the
thinner forms its dict holds only what the policy reads of such a window.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from streamae.core.config import OutputSettings
from streamae.core.manifest import Manifest
from streamae.core.scoring import ScoreBatch, Scorer, score_messages
from streamae.core.windows import Windows
from streamae.serving.dead_letters import Rejected, record_bytes, undeliverable

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True)
class Scored:
    """One partition's scored windows as columns, what every output form is built from."""

    windows: Windows
    score: np.ndarray  # float64: what meets the threshold (smoothed when the bundle says so)
    raw: np.ndarray  # float64: the window's pooled error (before smoothing and post-processing)
    top: np.ndarray  # int (m, k): indices of the top features
    share: np.ndarray  # float (m, k): their shares of the error
    names: list[str]  # what ``top`` indexes: the bundle's input fields (Scorer.attributed_to)

    @classmethod
    def of(cls, scorer: Scorer, windows: Windows, batch: ScoreBatch, score: np.ndarray, top_k: int) -> Scored:
        top, share = scorer.contributions(batch.feature_errors, top_k)
        return cls(windows, score, batch.scores, top, share, scorer.attributed_to)

    def messages(self, m: Manifest, idx: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Score messages of the windows ``idx`` (default: all) of a bundle with manifest ``m``."""
        return score_messages(
            self.windows,
            self.score,
            self.raw,
            self.top,
            self.share,
            self.names,
            m.threshold.value,
            m.model_version,
            idx,
        )


@dataclass(frozen=True)
class ScoreRecords:
    """What one partition's scored windows publish: score records ``(key, value, offset of
    the last reading, windows carried)``, per-window dicts for the alert policy, and outputs too large to
    publish (as dead letters)."""

    records: list[tuple[bytes, bytes, int, int]]
    policy: list[dict[str, Any]]
    too_large: list[Rejected]


def build(scorer: Scorer, s: Scored, o: OutputSettings, topic: str) -> ScoreRecords:
    """The score records of ``s`` (for ``topic``) in the form ``o.scores`` says."""
    w, m = s.windows, scorer.manifest
    threshold = m.threshold.value
    hot = s.score > threshold
    if o.scores == "all":
        docs = s.messages(m)
        return _single(docs, w, o.max_message_bytes, topic, policy=docs)
    policy = _policy_docs(s, hot, m)
    if o.scores == "above":
        shown = np.flatnonzero(s.score >= o.above_fraction * threshold)
        docs = s.messages(m, shown)
        return _single(docs, w, o.max_message_bytes, topic, policy=policy)
    records: list[tuple[bytes, bytes, int, int]] = []
    too_large: list[Rejected] = []
    for doc in _batch_docs(s, hot, s.names, threshold, m.model_version):
        _fit_batch(doc, o.max_message_bytes, topic, s.windows, records, too_large)
    return ScoreRecords(records, policy, too_large)


def _single(
    docs: list[dict[str, Any]], w: Windows, max_bytes: int, topic: str, policy: list[dict[str, Any]]
) -> ScoreRecords:
    records, too_large = [], []
    room = max_bytes - record_bytes(None, None)
    dumps = orjson.dumps
    for doc in docs:
        key, value, offset = doc["key"].encode(), dumps(doc), doc["source"]["offset_end"]
        if len(key) + len(value) <= room:
            records.append((key, value, offset, 1))
        else:  # only a bundle with absurdly long feature names gets here: keys are capped
            too_large.append(_too_large(w, offset, topic, key, value, max_bytes))
    return ScoreRecords(records, policy, too_large)


def _policy_docs(s: Scored, hot: np.ndarray, m: Manifest) -> list[dict[str, Any]]:
    """Per-window dicts for the alert policy: complete for windows over the threshold (one may
    become an alert's peak, which the alert events quote), lean for the others."""
    w, threshold = s.windows, m.threshold.value
    docs: list[dict[str, Any]] = [
        {"key": key, "window_end": end, "score": score, "threshold": threshold, "is_anomaly": False}
        for key, end, score in zip(w.keys.tolist(), w.end_ts.tolist(), s.score.tolist())
    ]
    hot_idx = np.flatnonzero(hot)
    for i, doc in zip(hot_idx.tolist(), s.messages(m, hot_idx)):
        docs[i] = doc
    return docs


def _batch_docs(
    s: Scored, hot: np.ndarray, features: list[str], threshold: float, version: str
) -> list[dict[str, Any]]:
    """One batch message per key (numpy arrays as they are, for orjson), each key's windows
    in order. The columns are sorted by key once, so each message takes slices (views),
    and the cost per key stays a few dict entries."""
    w = s.windows
    if not len(w):
        return []
    order = np.argsort(w.keys, kind="stable")  # stable: window order within a key
    keys = w.keys[order]
    cols = {
        "window_start": w.start_ts[order],
        "window_end": w.end_ts[order],
        "score": s.score[order],
        "raw_score": s.raw[order],
        "is_anomaly": hot[order],
        "offset_start": w.first_offset[order],
        "offset_end": w.last_offset[order],
        "top_features": np.asarray(features, dtype=object)[s.top[order]],
        "top_shares": np.round(s.share[order].astype(np.float64), 4),
    }
    cuts = [0, *(np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist(), len(keys)]
    head = {
        "model_version": version,
        "threshold": threshold,
        "source": {"topic": w.topic, "partition": w.partition},
    }
    docs = []
    for lo, hi in itertools.pairwise(cuts):
        doc: dict[str, Any] = {"key": keys[lo], **head}
        for name, col in cols.items():
            doc[name] = col[lo:hi]
        doc["top_features"] = doc["top_features"].tolist()  # strings: orjson takes no object arrays
        docs.append(doc)
    return docs


_COLUMNS = (
    "window_start",
    "window_end",
    "score",
    "raw_score",
    "is_anomaly",
    "offset_start",
    "offset_end",
    "top_features",
    "top_shares",
)


def _fit_batch(
    doc: dict[str, Any],
    max_bytes: int,
    topic: str,
    w: Windows,
    records: list[tuple[bytes, bytes, int, int]],
    too_large: list[Rejected],
) -> None:
    """Append ``doc`` to ``records``, or its halves when it is too large; a window alone that
    still is becomes a dead letter."""
    value, key = orjson.dumps(doc, option=_NUMPY), doc["key"].encode()
    last = int(doc["offset_end"][-1])
    n = len(doc["score"])
    if record_bytes(key, value) <= max_bytes:
        records.append((key, value, last, n))
    elif n > 1:
        for part in (slice(0, n // 2), slice(n // 2, n)):
            _fit_batch(
                {**doc, **{c: doc[c][part] for c in _COLUMNS}}, max_bytes, topic, w, records, too_large
            )
    else:
        too_large.append(_too_large(w, last, topic, key, value, max_bytes))


def _too_large(w: Windows, offset: int, topic: str, key: bytes, value: bytes, max_bytes: int) -> Rejected:
    why = f"is {record_bytes(key, value)} bytes, over STREAMAE_OUTPUT__MAX_MESSAGE_BYTES ({max_bytes})"
    return undeliverable(w.topic, w.partition, offset, topic, key, value, why, "output_too_large")
