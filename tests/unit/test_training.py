"""Training: every variant exports to ONNX that matches PyTorch, outliers score higher,
thresholds are calibrated as asked, bad history fails clearly."""

import json

import numpy as np
import pytest
import torch
from pictures import assert_picture

from streamae.core.bundle import DECODER, load_bundle
from streamae.core.config import VARIANTS, TrainSettings
from streamae.core.offline import score_frame
from streamae.core.readings import DataError
from streamae.training.calibration import SCORE_FLOOR, ThresholdRule
from streamae.training.fit import (
    PARITY_TOLERANCE,
    TRAINING_PLOT,
    export_onnx,
    fit,
    onnx_reconstruct,
    parity,
    torch_reconstruct,
)
from streamae.training.models import PCAReconstructor, build_model


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_export_matches_pytorch_on_random_weights(variant):
    torch.manual_seed(0)
    model = build_model(variant, 12, 3, hidden=16, code=4)
    x = np.random.default_rng(1).normal(size=(33, 12, 3)).astype(np.float32)
    if isinstance(model, PCAReconstructor):
        model.fit(x)
    recon, code = onnx_reconstruct(export_onnx(model, 12, 3), x)
    assert recon.shape == x.shape and code.shape[0] == 33
    t_recon, t_code = torch_reconstruct(model, x)
    np.testing.assert_allclose(recon, t_recon, atol=1e-5)
    np.testing.assert_allclose(code, t_code, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_inference_is_deterministic_and_training_corruption_is_not(variant):
    torch.manual_seed(0)
    model = build_model(variant, 12, 3)
    x = torch.randn(8, 12, 3)
    if isinstance(model, PCAReconstructor):
        model.fit(x.numpy())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])
    stochastic = variant in ("denoising", "variational")
    with torch.no_grad():
        losses = {float(model.training_loss(x, torch.nn.functional.mse_loss)) for _ in range(2)}
    assert (len(losses) == 2) == stochastic


def test_penalties_add_to_the_reconstruction_loss():
    torch.manual_seed(0)
    x = torch.randn(16, 10, 2)
    mse = torch.nn.functional.mse_loss
    for variant, knob in (("sparse", "sparsity"), ("contractive", "contractive")):
        off = build_model(variant, 10, 2, **{knob: 0.0})
        on = build_model(variant, 10, 2, **{knob: 1.0})
        on.load_state_dict(off.state_dict())
        assert float(on.training_loss(x, mse).detach()) > float(off.training_loss(x, mse).detach()) + 1e-6


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_passes_parity_and_scores(
    variant, variant_bundles, history, make_stream, scorer_of
):
    result = variant_bundles[variant]
    m = load_bundle(result.bundle.path).manifest
    assert m.variant == variant
    assert_picture(result.bundle.path / TRAINING_PLOT, (6, 3.5))
    assert m.training["history"] == result.history
    scorer = scorer_of(result.bundle.path)
    scores = score_frame(make_stream(hours=3, anomalies=0, seed=4).frame, scorer, "s")
    assert len(scores) and np.isfinite(scores["score"]).all()
    assert scorer.encode(np.zeros((2, m.window, len(m.features)), np.float32)).shape == (2, m.code_size)
    assert (DECODER in m.extras) == (variant == "variational")
    # the result hands back the PyTorch model whose weights the graph holds
    x = np.random.default_rng(0).normal(size=(4, m.window, len(m.features))).astype(np.float32)
    assert parity(result.model, result.bundle.model_bytes, x) <= PARITY_TOLERANCE


def test_trained_bundle_scores_injected_outliers_higher(bundle_dir, history, scorer_of):
    scorer = scorer_of(bundle_dir)
    m = scorer.manifest
    normal = history[history["key"] == history["key"].iloc[0]][m.features].to_numpy(np.float32)
    windows = np.stack([normal[i : i + m.window] for i in range(0, 400, 20)])
    shifted = windows.copy()
    shifted[:, :, 1] += 4 * normal[:, 1].std()
    s_normal, s_shifted = scorer.score(windows).scores, scorer.score(shifted).scores
    assert (s_normal < m.threshold.value).mean() > 0.9
    assert (s_shifted > m.threshold.value).all()
    top, _ = scorer.contributions(scorer.score(shifted).feature_errors, 1)
    assert (top[:, 0] == 1).all()  # the shifted sensor is named as the cause


def test_fixture_threshold_is_the_pot_extrapolation(bundle_dir):
    m = load_bundle(bundle_dir).manifest
    t = m.threshold
    assert t.method == "pot" and t.params["target_far"] == 1e-4
    # extrapolated beyond every held-out normal score, from the tail above the 90 % quantile
    assert t.params["initial"] < m.metrics["calibration_score_max"] < t.value


@pytest.mark.parametrize(
    ("method", "params"), [("sigma", {"sigma_k": 3.0}), ("pot", {"target_far": 0.01}), ("quantile", {})]
)
def test_threshold_methods_are_recorded_and_reproducible(history, tmp_path, method, params):
    """The manifest records the method and everything that set the value; the scores it was
    set on are those `streamae score` gives (tests/unit/test_calibrate.py)."""
    cfg = TrainSettings(window=10, epochs=2, seed=2, threshold=method, **params)
    result = fit(history, tmp_path / method, cfg, progress=False)
    t = result.bundle.manifest.threshold
    expected = ThresholdRule.of(cfg).apply(np.maximum(result.calibration_scores, SCORE_FLOOR))
    assert (t.method, t.value) == (method, expected["value"])
    assert t.params == {k: v for k, v in expected.items() if k not in ("method", "value")}
    assert t.calibration_windows == result.bundle.manifest.training["windows"]["calibration"]
    assert {"sigma": "k", "pot": "target_far", "quantile": "quantile"}[method] in t.params


def test_ewma_smoothing_is_calibrated_on_and_applied_to_smoothed_scores(history, tmp_path, scorer_of):
    cfg = TrainSettings(window=10, epochs=2, seed=2, ewma_alpha=0.3)
    bundle = fit(history, tmp_path / "s", cfg, progress=False).bundle
    assert bundle.manifest.threshold.ewma_alpha == 0.3
    scores = score_frame(history, scorer_of(bundle.path), "h")
    for _, g in scores.groupby("key"):
        raw, smooth = g["raw_score"].to_numpy(), g["score"].to_numpy()
        assert smooth[0] == raw[0]
        np.testing.assert_allclose(smooth[1:], 0.3 * raw[1:] + 0.7 * smooth[:-1], rtol=1e-9)
        assert smooth.std() < raw.std()


def test_bce_loss_scales_inputs_to_unit_range(history, tmp_path):
    cfg = TrainSettings(window=10, epochs=2, loss="bce")
    m = fit(history, tmp_path / "b", cfg, progress=False).bundle.manifest
    feats = history[m.features].to_numpy()
    assert m.loss == "bce"
    # min-max scaling on training rows: the scaled history sits (almost) in [0, 1]
    scaled = (feats - np.array(m.scaler.mean)) / np.array(m.scaler.scale)
    assert scaled.min() > -0.2 and scaled.max() < 1.2


@pytest.mark.parametrize("variant", ["pca", "dense"])
def test_a_flat_history_gets_a_positive_threshold(history, tmp_path, variant, scorer_of):
    flat = history.assign(**{c: 1.0 for c in ("flow", "pressure")})[["timestamp", "key", "flow", "pressure"]]
    m = fit(flat, tmp_path / variant, TrainSettings(variant=variant, window=10, epochs=2), progress=False)
    assert m.bundle.manifest.threshold.value > 0
    scorer = scorer_of(m.bundle.path)
    bumped = flat.assign(flow=1.0 + (flat.index % 97 == 0))
    assert score_frame(bumped, scorer, "f")["is_anomaly"].any()


def test_a_zero_code_is_refused_for_networks():
    assert TrainSettings(variant="pca", code=0).code == 0
    with pytest.raises(ValueError, match="pca only"):
        TrainSettings(variant="dense", code=0)


def test_pca_bce_is_refused():
    with pytest.raises(ValueError, match="pca reconstructs linearly"):
        TrainSettings(variant="pca", loss="bce")


def test_training_is_reproducible(history, tmp_path):
    cfg = TrainSettings(window=10, epochs=2, seed=5, variant="denoising")
    a = fit(history, tmp_path / "a", cfg, progress=False).bundle.manifest
    b = fit(history, tmp_path / "b", cfg, progress=False).bundle.manifest
    assert a.threshold.value == b.threshold.value and a.checksum == b.checksum


def test_manifest_records_the_settings_and_curve(bundle_dir):
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    assert raw["training"]["window"] == 20 and raw["training"]["lr_schedule"] == "plateau"
    epochs = [h["epoch"] for h in raw["training"]["history"]]
    assert epochs == list(range(1, len(epochs) + 1))


def test_too_little_history_is_a_clear_error(history, tmp_path):
    with pytest.raises(DataError, match="need 50"):
        fit(history.head(40), tmp_path / "x", TrainSettings(window=10), progress=False)
    with pytest.raises(DataError, match="no field to model"):
        fit(history[["timestamp", "key"]], tmp_path / "y", TrainSettings(), progress=False)


def test_labelled_rows_in_history_are_kept_out_of_training(history, tmp_path):
    dirty = history.copy()
    dirty["label"] = 0
    rows = dirty.index[500:540]
    dirty.loc[rows, "flow"] += 500
    dirty.loc[rows, "label"] = 1
    cfg = TrainSettings(window=10, epochs=3, seed=5)
    m = fit(dirty, tmp_path / "d", cfg, progress=False).bundle.manifest
    assert "label" not in m.features
    # 40 labelled rows over 2 keys: every window touching one of them is excluded
    assert m.training["excluded_labelled_windows"] == 2 * (20 + 10 - 1)
    clean = fit(history, tmp_path / "c", cfg, progress=False).bundle.manifest
    flow = m.features.index("flow")
    # had the 40 rows (+500 each) entered the scaler, its flow mean would move by ~5
    assert abs(m.scaler.mean[flow] - clean.scaler.mean[flow]) < 0.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_device_without_gpu_is_a_clear_error(history, tmp_path):
    from streamae.core.config import ConfigError

    with pytest.raises(ConfigError, match="no CUDA device"):
        fit(history, tmp_path / "x", TrainSettings(device="cuda"), progress=False)
