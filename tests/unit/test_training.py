"""Training: ONNX export matches PyTorch, outliers score higher, bad history fails clearly."""

import numpy as np
import pytest
import torch

from streamae.bundle import load_bundle
from streamae.models import build_model
from streamae.readings import DataError
from streamae.scoring import Scorer
from streamae.training import TrainConfig, export_onnx, fit, onnx_reconstruct, torch_reconstruct


def test_onnx_export_matches_pytorch_on_random_weights():
    torch.manual_seed(0)
    model = build_model("dense", 12, 3, hidden=16, code=4)
    x = np.random.default_rng(1).normal(size=(33, 12, 3)).astype(np.float32)
    onnx_out = onnx_reconstruct(export_onnx(model, 12, 3), x)
    assert onnx_out.shape == x.shape
    np.testing.assert_allclose(onnx_out, torch_reconstruct(model, x), atol=1e-5)


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("quantum", 4, 2)


def test_trained_bundle_scores_injected_outliers_higher(bundle_dir, history):
    scorer = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"])
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


def test_threshold_is_the_calibration_quantile(bundle_dir):
    m = load_bundle(bundle_dir).manifest
    assert m.threshold.quantile == 0.995
    assert m.metrics["calibration_score_median"] < m.threshold.value
    assert m.threshold.value <= m.metrics["calibration_score_max"]


def test_training_is_reproducible(history, tmp_path):
    cfg = TrainConfig(window=10, epochs=2, progress=False, seed=5)
    a = fit(history, tmp_path / "a", cfg).bundle.manifest
    b = fit(history, tmp_path / "b", cfg).bundle.manifest
    assert a.threshold.value == b.threshold.value and a.checksum == b.checksum


def test_too_little_history_is_a_clear_error(history, tmp_path):
    with pytest.raises(DataError, match="need 50"):
        fit(history.head(40), tmp_path / "x", TrainConfig(window=10, progress=False))
    with pytest.raises(DataError, match="no numeric feature"):
        fit(history[["timestamp", "key"]], tmp_path / "y", TrainConfig(progress=False))


def test_labelled_rows_in_history_are_kept_out_of_training(history, tmp_path):
    dirty = history.copy()
    dirty["label"] = 0
    rows = dirty.index[500:540]
    dirty.loc[rows, "flow"] += 500
    dirty.loc[rows, "label"] = 1
    cfg = TrainConfig(window=10, epochs=3, progress=False, seed=5)
    m = fit(dirty, tmp_path / "d", cfg).bundle.manifest
    assert "label" not in m.features
    # 40 labelled rows over 2 keys: every window touching one of them is excluded
    assert m.training["excluded_labelled_windows"] == 2 * (20 + 10 - 1)
    clean = fit(history, tmp_path / "c", cfg).bundle.manifest
    flow = m.features.index("flow")
    # had the 40 rows (+500 each) entered the scaler, its flow mean would move by ~5
    assert abs(m.scaler.mean[flow] - clean.scaler.mean[flow]) < 0.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_device_without_gpu_is_a_clear_error(history, tmp_path):
    from streamae.config import ConfigError

    with pytest.raises(ConfigError, match="no CUDA device"):
        fit(history, tmp_path / "x", TrainConfig(device="cuda", progress=False))
