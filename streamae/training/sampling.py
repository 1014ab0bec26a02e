"""Synthetic windows from a variational bundle: codes from the prior, through its decoder.

A variational autoencoder is trained so that codes of normal windows follow N(0, I); the
decoder turns draws from that prior into windows that look like normal history. Written
as readings (one key per sampled window), they feed straight back into ``streamae
score`` or ``streamae train``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import pandas as pd

from streamae.core.bundle import CODE_NAME, DECODER, OUTPUT_NAME, Bundle, BundleError
from streamae.core.session import run_chunked, select_providers

DEFAULT_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, as `streamae simulate`
BATCH = 4096


def decoder_session(
    bundle: Bundle, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> ort.InferenceSession:
    """An ONNX Runtime session for the bundle's ``decoder.onnx`` (checked against the manifest)."""
    m = bundle.manifest
    if DECODER not in m.extras:
        raise BundleError(f"sample needs a variational bundle ({DECODER}), {bundle.path} is {m.variant}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # as in Scorer: a GPU build on a CPU-only host falls back quietly instead of logging errors
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(
            bundle.extra(DECODER), sess_options=opts, providers=select_providers(providers)
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"{bundle.path / DECODER}: ONNX Runtime cannot load it: {exc}") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != [CODE_NAME] or OUTPUT_NAME not in outputs:
        raise BundleError(
            f"{bundle.path / DECODER}: expected input '{CODE_NAME}' and output '{OUTPUT_NAME}', "
            f"has {inputs} → {outputs}"
        )
    return session


def sample_windows(
    bundle: Bundle, n: int, seed: int = 0, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> np.ndarray:
    """``n`` windows ``(n, window, F)`` in data units: z ~ N(0, I) decoded, then unscaled."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    m = bundle.manifest
    session = decoder_session(bundle, providers)
    z = np.random.default_rng(seed).standard_normal((n, m.code_size)).astype(np.float32)
    shape = (m.window, len(m.features))
    scaled = (
        run_chunked(session, [OUTPUT_NAME], CODE_NAME, z, BATCH)[0]
        if n
        else np.empty((0, *shape), np.float32)
    )
    if scaled.shape[1:] != shape:
        raise BundleError(
            f"{bundle.path / DECODER}: output shape {scaled.shape[1:]} does not match manifest "
            f"'window' ({m.window}) and 'features' ({len(m.features)})"
        )
    # the decoder speaks the model's scaled units; the scaler maps them back to the data's
    scale = np.asarray(m.scaler.scale, dtype=np.float64)
    mean = np.asarray(m.scaler.mean, dtype=np.float64)
    return scaled.astype(np.float64) * scale + mean


def samples_frame(
    bundle: Bundle,
    n: int,
    seed: int = 0,
    interval: float = 60.0,
    start: float = DEFAULT_START,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> pd.DataFrame:
    """Sampled windows as readings: window ``i`` becomes ``window`` readings of key
    ``sample-<i>`` at ``start + j·interval``, one column per manifest feature."""
    m = bundle.manifest
    data = sample_windows(bundle, n, seed, providers)
    frame = pd.DataFrame(data.reshape(n * m.window, len(m.features)), columns=m.features)
    frame.insert(0, "key", np.repeat(np.array([f"sample-{i}" for i in range(n)], dtype=object), m.window))
    frame.insert(0, "timestamp", start + interval * np.tile(np.arange(m.window, dtype=np.float64), n))
    return frame
