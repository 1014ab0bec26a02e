"""Score windows with the bundle's ONNX autoencoder.

How a window's reconstruction errors become its score (the bundle's ``score`` section) is
``window_score.py``. The per-feature errors are computed inside the ONNX graph
(``score_graph.py``), so a GPU returns ``(m, F)`` rather than the reconstruction; on the
CUDA provider the session runs through I/O binding (``session.py``, ``model.io_binding``). Per-feature
errors over their normal means also say which sensors caused it. When the bundle says so,
raw scores are smoothed per key (EWMA) before they meet the threshold. The daemon and
``streamae score`` both go through :meth:`Scorer.messages`; calibration scores its held-out
windows through :meth:`Scorer.score` and :meth:`Scorer.smooth`, and training feeds the
model through :class:`InputScaler`, so a threshold is set by exactly the code that applies it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streamae.core import adapt, postprocess
from streamae.core.bundle import CODE_NAME, Bundle, BundleError, load_bundle
from streamae.core.config import Settings
from streamae.core.postprocess import PostState
from streamae.core.score_graph import scoring_graph
from streamae.core.session import CUDA, IoBindingMode, ScoringSession
from streamae.core.smoothing import ewma
from streamae.core.stream_state import StreamState
from streamae.core.window_score import ReadingResidual, pool_features, time_weights
from streamae.core.windows import Windows

log = logging.getLogger(__name__)

CLIP_SIGMAS = 1e6


@dataclass(frozen=True)
class ScoreBatch:
    scores: np.ndarray  # float64 (m,)
    feature_errors: np.ndarray  # float32 (m, F), per feature (window_score.py says how)

    def __len__(self) -> int:
        return len(self.scores)


#: Per-key EWMA state: key -> last smoothed score (see :meth:`Scorer.smooth`).
SmoothingState = dict[Any, float]


class InputScaler:
    """The model's input units: ``(x - mean) / scale`` per feature, in float32, clipped to
    ``±CLIP_SIGMAS``. Training feeds the model through it and :class:`Scorer` serves
    through it: one implementation of scaling."""

    def __init__(self, mean: Sequence[float] | np.ndarray, scale: Sequence[float] | np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.inv_scale = 1.0 / np.asarray(scale, dtype=np.float32)

    def __call__(self, data: np.ndarray) -> np.ndarray:
        """Raw windows ``(m, window, F)`` in the model's input units (float32)."""
        with np.errstate(over="ignore"):
            x = ((data - self.mean) * self.inv_scale).astype(np.float32, copy=False)
        # a reading a million standard deviations out is anomalous whatever its exact size;
        # clipping keeps the squared error finite, so it scores high instead of inf/NaN
        return np.clip(x, -CLIP_SIGMAS, CLIP_SIGMAS, out=x)


class Scorer:
    """An ONNX Runtime session for one bundle, scoring windows in batches: the bundle's
    :class:`~streamae.core.detector.Detector`."""

    def __init__(
        self,
        bundle: Bundle,
        providers: Sequence[str] = (CUDA, "CPUExecutionProvider"),
        intra_op_threads: int = 0,
        max_batch: int = 4096,
        *,
        provider_options: Mapping[str, Mapping[str, str]] | None = None,
        io_binding: IoBindingMode = "cuda",
    ) -> None:
        m = bundle.manifest
        self.manifest = m
        self.bundle_path = bundle.path
        self.max_batch = max_batch
        # ONNX Runtime time and windows so far, wherever the calls come from (an adaptive
        # bundle scores inside `stream`, block by block): the daemon reports the increments
        self.inference_s = 0.0
        self.inference_windows = 0
        weights = time_weights(m.score, m.window)
        self.encoding = m.encoding()
        try:
            graph = scoring_graph(
                bundle.model_bytes,
                m.window,
                len(m.features),
                weights,
                ReadingResidual.of(m.score),
                self.encoding.groups,
            )
        except BundleError as exc:
            raise BundleError(f"{bundle.path}/model.onnx: {exc}") from None
        self._runner = ScoringSession(
            graph,
            f"{bundle.path}/model.onnx",
            providers,
            intra_op_threads,
            max_batch,
            provider_options or {},
            io_binding,
        )
        self._scaler = InputScaler(m.scaler.mean, m.scaler.scale)
        self._error_scale = np.asarray(m.feature_error_scale, dtype=np.float32)
        fields, index = self.encoding.attribution
        #: the names :meth:`contributions` ranks: the bundle's input fields (a categorical
        #: field's one-hot columns and its context columns count as that field)
        self.attributed_to: list[str] = fields if self.encoding.expands else list(m.features)
        self._to_fields = np.eye(len(fields), dtype=np.float32)[index] if self.encoding.expands else None

    @classmethod
    def load(cls, path: Path | str, settings: Settings) -> Scorer:
        """The scorer of the bundle at ``path`` as ``settings`` configure it (providers,
        threads, batch): the one way every command builds it."""
        return cls.configured(load_bundle(path), settings)

    @classmethod
    def configured(cls, bundle: Bundle, settings: Settings) -> Scorer:
        """As :meth:`load`, for a bundle already in memory (``streamae calibrate`` scores with
        the manifest it is about to write)."""
        m = settings.model
        return cls(
            bundle,
            m.providers,
            m.intra_op_threads,
            settings.batch.max_windows,
            provider_options={CUDA: m.cuda_provider_options()},
            io_binding="cuda" if m.io_binding else "never",
        )

    @property
    def threshold(self) -> float:
        return self.manifest.threshold.value

    @property
    def providers(self) -> list[str]:
        return self._runner.providers

    @property
    def session(self) -> ort.InferenceSession:
        """The ONNX Runtime session of the scoring graph."""
        return self._runner.session

    @property
    def io_bound(self) -> bool:
        """Whether scoring runs through I/O binding (``model.io_binding``)."""
        return self._runner.io_bound

    def scale(self, data: np.ndarray) -> np.ndarray:
        """Raw windows ``(m, window, F)`` in the model's input units (float32)."""
        shape = (self.manifest.window, len(self.manifest.features))
        if data.ndim != 3 or data.shape[1:] != shape:
            raise ValueError(f"windows must be (m, {shape[0]}, {shape[1]})")
        return self._scaler(data)

    def score(self, data: np.ndarray) -> ScoreBatch:
        """Raw scores of raw (unscaled) windows ``(m, window, F)``."""
        x = self.scale(data)
        errors = np.empty((len(x), x.shape[2]), dtype=np.float32)
        started = time.perf_counter()
        for lo in range(0, len(x), self.max_batch):
            chunk = x[lo : lo + self.max_batch]
            self._runner.feature_errors(chunk, errors[lo : lo + len(chunk)])
        self.inference_s += time.perf_counter() - started
        self.inference_windows += len(x)
        return ScoreBatch(pool_features(errors, self.manifest.score, self._error_scale), errors)

    def decision_function(self, windows: np.ndarray) -> np.ndarray:
        """Raw scores ``(m,)`` of raw windows: the :class:`~streamae.core.detector.Detector` view
        of :meth:`score`, without the per-feature errors."""
        return self.score(windows).scores

    def encode(self, data: np.ndarray) -> np.ndarray:
        """Latent codes ``(m, code_size)`` of raw windows (for pictures of the latent space)."""
        if not len(data):
            return np.empty((0, self.manifest.code_size), np.float32)
        return self._runner.run([CODE_NAME], self.scale(data))[0]

    def smooth(self, keys: np.ndarray, scores: np.ndarray, state: SmoothingState | None = None) -> np.ndarray:
        """Scores as compared with the threshold: EWMA per key when the bundle asks for it.

        ``state`` (key → last smoothed score) carries the smoothing across calls.
        """
        alpha = self.manifest.threshold.ewma_alpha
        return scores if alpha >= 1 else ewma(scores, alpha, keys, state)

    def contributions(self, feature_errors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(m, k)`` into :attr:`attributed_to` and shares of the top-``k`` fields,
        errors normalised by training."""
        rel = feature_errors / self._error_scale
        if self._to_fields is not None:
            rel = rel @ self._to_fields
        total = rel.sum(axis=1, keepdims=True)
        share = np.divide(rel, total, out=np.zeros_like(rel), where=total > 0)
        k = min(k, share.shape[1])
        top = np.argsort(-share, axis=1, kind="stable")[:, :k]
        return top, np.take_along_axis(share, top, axis=1)

    def finalise(self, windows: Windows, smoothed: np.ndarray, post: PostState | None = None) -> np.ndarray:
        """Smoothed scores after the bundle's streaming post-processing (``core/postprocess.py``;
        ``post`` carries its per-key state): the scores compared with the threshold."""
        spec = self.manifest.postprocess
        if not postprocess.is_active(spec):
            return smoothed
        t = self.threshold
        return postprocess.apply(spec, windows.keys, smoothed / t, windows.data[:, -1, :], post) * t

    @property
    def adaptive(self) -> bool:
        """Whether the bundle normalises each key's readings as it streams (``core/adapt.py``):
        then a window's score depends on its key's earlier flags, and only :meth:`stream`
        scores it."""
        return adapt.is_active(self.manifest.adapt)

    def stream(
        self, windows: Windows, state: StreamState | None = None, batch: ScoreBatch | None = None
    ) -> tuple[ScoreBatch, np.ndarray]:
        """Raw scores of ``windows`` (in stream order) and the scores compared with the
        threshold (smoothed and post-processed), carrying the per-key ``state`` across calls
        (None: a stream of its own): the one path of ``serve``, ``score``, ``evaluate``,
        ``inspect`` and selection. ``batch``: the windows' raw scores when already computed
        (ignored by an adaptive bundle, whose scores depend on the state)."""
        state = StreamState() if state is None else state
        if not self.adaptive:
            batch = self.score(windows.data) if batch is None else batch
            smoothed = self.smooth(windows.keys, batch.scores, state.smoothing)
            return batch, self.finalise(windows, smoothed, state.post)
        n, f = len(windows), len(self.manifest.features)
        scores, final = np.empty(n, np.float64), np.empty(n, np.float64)
        errors = np.empty((n, f), np.float32)
        if not n:
            return ScoreBatch(scores, errors), final
        adapter = adapt.Adapter(self.manifest.adapt, windows.keys, state.adapt)
        for level in range(int(adapter.levels.max()) + 1):  # one block of each key at a time
            rows = adapter.levels == level
            part = windows.select(rows)
            b = self.score(adapter.correct(part.data, rows))
            out = self.finalise(part, self.smooth(part.keys, b.scores, state.smoothing), state.post)
            adapter.learn(rows, part.data[:, -1, :], out > self.threshold)
            scores[rows], errors[rows], final[rows] = b.scores, b.feature_errors, out
        adapter.save(state.adapt)
        return ScoreBatch(scores, errors), final

    def messages(
        self,
        windows: Windows,
        batch: ScoreBatch,
        top_k: int = 3,
        state: StreamState | None = None,
    ) -> list[dict[str, Any]]:
        """Score messages (see ``messages.ScoreMessage``) for scored windows, in order, with
        the per-key ``state`` of :meth:`stream`."""
        batch, final = self.stream(windows, state, batch)
        return self.to_messages(windows, batch, final, top_k)

    def to_messages(
        self, windows: Windows, batch: ScoreBatch, smoothed: np.ndarray, top_k: int = 3
    ) -> list[dict[str, Any]]:
        """Score messages for windows whose raw ``batch`` is already smoothed and post-processed
        into ``smoothed`` (the scores compared with the threshold)."""
        m = self.manifest
        top, share = self.contributions(batch.feature_errors, top_k)
        return score_messages(
            windows,
            smoothed,
            batch.scores,
            top,
            share,
            self.attributed_to,
            m.threshold.value,
            m.model_version,
        )


def score_messages(
    w: Windows,
    score: np.ndarray,
    raw: np.ndarray,
    top: np.ndarray,
    share: np.ndarray,
    features: Sequence[str],
    threshold: float,
    version: str,
    idx: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Score messages (``messages.ScoreMessage``) of the windows ``idx`` (default: all) from
    columns: ``score`` meets the threshold, ``raw`` is the window error, ``top``/``share``
    the top features (:meth:`Scorer.contributions`). The one builder of ``serve`` and ``score``."""
    # rounded in one numpy call, in float64 (a float32 0.62 would print as 0.6200000047683716)
    share4 = np.round(share.astype(np.float64), 4)
    cols = [top, share4, w.keys, w.start_ts, w.end_ts, score, raw, w.first_offset, w.last_offset]
    if idx is not None:
        cols = [c[idx] for c in cols]
    tops_i, shares, keys, starts, ends, scores, raws, first, last = (c.tolist() for c in cols)
    tops = [[{"feature": features[f], "share": x} for f, x in zip(fs, xs)] for fs, xs in zip(tops_i, shares)]
    topic, partition = w.topic, w.partition
    return [
        {
            "key": key,
            "window_start": start,
            "window_end": end,
            "score": sc,
            "raw_score": r,
            "threshold": threshold,
            "is_anomaly": sc > threshold,
            "top_features": tf,
            "model_version": version,
            "source": {"topic": topic, "partition": partition, "offset_start": o0, "offset_end": o1},
        }
        for key, start, end, sc, r, tf, o0, o1 in zip(keys, starts, ends, scores, raws, tops, first, last)
    ]
