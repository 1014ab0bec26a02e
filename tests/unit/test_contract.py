"""The contract every autoencoder variant keeps, checked on each of them alike.

Shapes of the exported graph, reruns with one seed, ONNX equal to PyTorch, injected outliers
scoring above normal windows, a lossless bundle round trip, and the variational decoder's
parity. Bundles come from the session fixture ``variant_bundles`` (window 10, 3 epochs).
"""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from streamae.core.bundle import CODE_NAME, DECODER, OUTPUT_NAME, load_bundle, write_bundle
from streamae.core.config import VARIANTS, TrainSettings
from streamae.core.scoring import Scorer
from streamae.training.export import (
    PARITY_TOLERANCE,
    export_decoder,
    export_onnx,
    onnx_reconstruct,
    torch_reconstruct,
)
from streamae.training.fit import TrainResult, fit
from streamae.training.models import PCAReconstructor, build_model

CPU = ["CPUExecutionProvider"]
SPIKE_SIGMAS = 6.0  # one reading of one sensor
SHIFT_SIGMAS = 3.0  # one sensor, over the second half of the window
NORMAL_QUANTILE = 0.95  # injected windows must score above this share of normal windows

every_variant = pytest.mark.parametrize("variant", VARIANTS)


@pytest.fixture(scope="module")
def held_out(make_stream) -> pd.DataFrame:
    """Six normal hours after the history the variants were trained on."""
    return make_stream(hours=6, anomalies=0, seed=4).frame


def _windows(frame: pd.DataFrame, features: list[str], window: int, stride: int = 5) -> np.ndarray:
    """Raw windows ``(m, window, F)`` of each key's readings, every ``stride`` readings."""
    parts = []
    for _, rows in frame.groupby("key", sort=True):
        values = rows[features].to_numpy(np.float32)
        # sliding_window_view puts the window axis last: (n, F, W) -> (n, W, F)
        parts.append(sliding_window_view(values, window, axis=0)[::stride].transpose(0, 2, 1))
    return np.ascontiguousarray(np.concatenate(parts))


def _setup(result: TrainResult, frame: pd.DataFrame) -> tuple[Scorer, np.ndarray]:
    scorer = Scorer(result.bundle, CPU)
    m = scorer.manifest
    return scorer, _windows(frame, m.features, m.window)


def _inject(windows: np.ndarray, scale: list[float], kind: str) -> np.ndarray:
    """A copy with one sensor per window pushed away by a multiple of its training std.

    Windows take turns over the sensors, so every sensor is tried."""
    out = windows.copy()
    m, w, f = out.shape
    sensor = np.arange(m) % f
    sigma = np.asarray(scale, dtype=np.float32)[sensor]
    if kind == "spike":
        out[np.arange(m), w // 2, sensor] += SPIKE_SIGMAS * sigma
    else:
        for i in range(m):
            out[i, w // 2 :, sensor[i]] += SHIFT_SIGMAS * sigma[i]
    return out


def _separation_failures(normal: np.ndarray, injected: np.ndarray) -> list[str]:
    """Why ``injected`` scores (paired with ``normal``, the same windows before injection) do
    not stand out; empty when every injected window beats its clean self and most normal ones."""
    failures = []
    if not np.all(injected > normal):
        failures.append(f"{int(np.sum(injected <= normal))} of {len(normal)} injected windows score ≤ clean")
    bar = np.quantile(normal, NORMAL_QUANTILE)
    if not np.all(injected > bar):
        failures.append(
            f"{int(np.sum(injected <= bar))} injected windows score ≤ the {NORMAL_QUANTILE:.0%} quantile "
            f"of normal windows ({bar:.4g}); lowest injected {injected.min():.4g}"
        )
    return failures


@every_variant
def test_graph_and_scores_have_the_contract_shapes(variant, variant_bundles, held_out):
    scorer, windows = _setup(variant_bundles[variant], held_out)
    m = scorer.manifest
    assert m.variant == variant
    n, f = len(windows), len(m.features)
    for x in (windows[:1], windows):  # the batch axis is dynamic
        recon, code = onnx_reconstruct(variant_bundles[variant].bundle.model_bytes, scorer.scale(x))
        assert recon.shape == (len(x), m.window, f) and recon.dtype == np.float32
        assert code.shape == (len(x), m.code_size)
        assert np.isfinite(recon).all() and np.isfinite(code).all()
    scores = scorer.decision_function(windows)
    assert scores.shape == (n,) and scores.dtype == np.float64
    assert np.isfinite(scores).all() and (scores >= 0).all()
    assert scorer.encode(windows).shape == (n, m.code_size)
    # scoring is a pure function of the window: the same windows, in another order, score the same
    order = np.random.default_rng(0).permutation(n)
    np.testing.assert_array_equal(scorer.decision_function(windows[order]), scores[order])


@every_variant
def test_two_fits_with_one_seed_export_the_same_graph(variant, history, tmp_path):
    # Six hours and two epochs: enough for shuffling, corruption and sampling to repeat or not.
    cfg = TrainSettings(variant=variant, window=10, epochs=2, seed=7)
    short = history.head(720)
    a, b = (fit(short, tmp_path / name, cfg, progress=False).bundle for name in ("a", "b"))
    x = np.random.default_rng(1).normal(size=(40, 10, len(a.manifest.features))).astype(np.float32)
    for out_a, out_b in zip(onnx_reconstruct(a.model_bytes, x), onnx_reconstruct(b.model_bytes, x)):
        np.testing.assert_array_equal(out_a, out_b)
    assert a.manifest.threshold == b.manifest.threshold
    assert a.manifest.scaler == b.manifest.scaler


@every_variant
def test_onnx_graph_equals_pytorch(variant, variant_bundles, held_out):
    scorer, windows = _setup(variant_bundles[variant], held_out)
    m = scorer.manifest
    torch.manual_seed(0)
    model = build_model(variant, m.window, len(m.features))
    x = scorer.scale(windows)
    if isinstance(model, PCAReconstructor):
        model.fit(x)
    model_bytes = export_onnx(model, m.window, len(m.features))
    # realistic inputs, one window alone, and far-out ones whose outputs are large
    far = 50 * np.random.default_rng(2).normal(size=(7, m.window, len(m.features))).astype(np.float32)
    for batch in (x, x[:1], far):
        for got, want in zip(onnx_reconstruct(model_bytes, batch), torch_reconstruct(model, batch)):
            assert got.shape == want.shape
            # |onnx - torch| <= tol * (1 + |torch|): absolute near zero, relative for large outputs
            np.testing.assert_allclose(got, want, rtol=PARITY_TOLERANCE, atol=PARITY_TOLERANCE)


@every_variant
@pytest.mark.parametrize("kind", ["spike", "level_shift"])
def test_injected_outliers_score_above_normal_windows(variant, kind, variant_bundles, held_out):
    scorer, windows = _setup(variant_bundles[variant], held_out)
    injected = _inject(windows, scorer.manifest.scaler.scale, kind)
    normal_scores = scorer.decision_function(windows)
    injected_scores = scorer.decision_function(injected)
    assert _separation_failures(normal_scores, injected_scores) == []


def test_outlier_criterion_rejects_detectors_that_do_not_detect():
    # The criterion above is not vacuous: a model that copies its input (zero error everywhere),
    # one that scores at random, and one that adds a trifle to each window all fail it.
    rng = np.random.default_rng(3)
    normal = rng.random(100)
    assert _separation_failures(np.zeros(100), np.zeros(100))
    assert _separation_failures(normal, rng.random(100))
    assert _separation_failures(normal, normal + 1e-3)  # above its clean self, not above the rest
    assert _separation_failures(normal, normal + 1.0) == []


@every_variant
def test_bundle_round_trip_keeps_manifest_and_scores(variant, variant_bundles, held_out, tmp_path):
    written = variant_bundles[variant].bundle
    scorer, windows = _setup(variant_bundles[variant], held_out)
    expected = scorer.decision_function(windows)
    # load the directory fit wrote, a copy of it elsewhere, and a rewrite of what was loaded
    copy = tmp_path / "copy"
    shutil.copytree(written.path, copy)
    loaded = load_bundle(written.path)
    m = loaded.manifest
    extras = {name: loaded.extra(name) for name in m.extras}
    fields = m.model_dump(exclude={"checksum", "extras"})
    rewritten = write_bundle(tmp_path / "rewritten", loaded.model_bytes, fields, extras=extras)
    for path in (written.path, copy, rewritten.path):
        again = load_bundle(path)
        assert again.manifest == written.manifest, path
        assert again.model_bytes == written.model_bytes
        np.testing.assert_array_equal(Scorer(again, CPU).decision_function(windows), expected)
    assert (DECODER in m.extras) == (variant == "variational")


def test_variational_decoder_matches_pytorch_and_the_bundle(variant_bundles, held_out):
    variant = "variational"
    result = variant_bundles[variant]
    m = result.bundle.manifest
    # the exported decoder computes model.decode (random weights; codes of either sign and size)
    torch.manual_seed(0)
    model = build_model(variant, m.window, len(m.features)).eval()
    code_size = int(model.encode(torch.zeros(1, m.window, len(m.features))).shape[1])
    z = np.random.default_rng(4).normal(scale=3.0, size=(33, code_size)).astype(np.float32)
    session = ort.InferenceSession(export_decoder(model, code_size), providers=CPU)
    (got,) = session.run([OUTPUT_NAME], {CODE_NAME: z})
    with torch.no_grad():
        want = model.decode(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(got, want, rtol=PARITY_TOLERANCE, atol=PARITY_TOLERANCE)
    # the bundle's decoder.onnx turns the model's codes back into its reconstructions
    scorer, windows = _setup(result, held_out)
    recon, code = onnx_reconstruct(result.bundle.model_bytes, scorer.scale(windows))
    decoder = ort.InferenceSession(result.bundle.extra(DECODER), providers=CPU)
    (decoded,) = decoder.run([OUTPUT_NAME], {CODE_NAME: code})
    np.testing.assert_allclose(decoded, recon, rtol=PARITY_TOLERANCE, atol=PARITY_TOLERANCE)
