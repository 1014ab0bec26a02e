"""streamae sample: synthetic readings from a variational bundle's decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamae.cli import main
from streamae.core.bundle import BundleError, load_bundle
from streamae.core.config import TrainSettings
from streamae.training.sampling import sample_windows, samples_frame

VAE_WINDOW = 10


@pytest.fixture(scope="module")
def vae_dir(history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from streamae.training.fit import fit

    out = tmp_path_factory.mktemp("vae") / "vae"
    fit(history, out, TrainSettings(variant="variational", window=VAE_WINDOW, epochs=3), progress=False)
    return out


def test_sample_cli_writes_readings_in_the_bundles_format(vae_dir, tmp_path, capsys):
    out = tmp_path / "s.csv"
    args = ["sample", str(vae_dir), "-n", "7", "-o", str(out), "--interval", "30", "--start", "1000"]
    assert main(args) == 0
    assert "70 readings" in capsys.readouterr().out
    frame = pd.read_csv(out)
    features = load_bundle(vae_dir).manifest.features
    assert list(frame.columns) == ["timestamp", "key", *features]
    assert len(frame) == 7 * VAE_WINDOW
    assert frame.groupby("key").size().to_dict() == {f"sample-{i}": VAE_WINDOW for i in range(7)}
    first = frame[frame["key"] == "sample-3"]["timestamp"].to_numpy()
    np.testing.assert_array_equal(first, 1000 + 30 * np.arange(VAE_WINDOW))
    assert np.isfinite(frame[features].to_numpy()).all()


def test_sampled_readings_score_back(vae_dir, tmp_path, capsys):
    data, scores = tmp_path / "s.csv", tmp_path / "scores.csv"
    assert main(["sample", str(vae_dir), "-n", "4", "-o", str(data)]) == 0
    assert main(["score", str(vae_dir), str(data), "-o", str(scores)]) == 0
    assert len(pd.read_csv(scores)) == 4  # one full window per sampled key


def test_sampling_is_deterministic_per_seed(vae_dir):
    bundle = load_bundle(vae_dir)
    a, b, c = (sample_windows(bundle, 16, seed) for seed in (1, 1, 2))
    assert a.shape == (16, VAE_WINDOW, len(bundle.manifest.features))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_sampled_means_lie_within_the_history(vae_dir, history):
    bundle = load_bundle(vae_dir)
    features = bundle.manifest.features
    means = samples_frame(bundle, 64, seed=4)[features].mean()
    lo, hi = history[features].min(), history[features].max()
    assert ((means > lo) & (means < hi)).all(), pd.DataFrame({"lo": lo, "mean": means, "hi": hi})


def test_sample_needs_a_variational_bundle(bundle_dir, tmp_path, capsys):
    assert main(["sample", str(bundle_dir), "-n", "3", "-o", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert f"sample needs a variational bundle (decoder.onnx), {bundle_dir} is dense" in err
    assert not (tmp_path / "s.csv").exists()
    with pytest.raises(BundleError, match="variational"):
        sample_windows(load_bundle(bundle_dir), 1)


def test_sample_rejects_a_tampered_decoder(vae_dir, tmp_path):
    import shutil

    copy = tmp_path / "vae"
    shutil.copytree(vae_dir, copy)
    (copy / "decoder.onnx").write_bytes(b"not a model")
    with pytest.raises(BundleError, match="checksum mismatch"):
        sample_windows(load_bundle(copy), 1)
