import json
import shutil

import numpy as np
import pytest

from streamae.core.bundle import MANIFEST_CHECKSUM, BundleError, load_bundle, sha256
from streamae.core.scoring import Scorer


def test_round_trip_keeps_manifest_and_model(bundle_dir):
    b = load_bundle(bundle_dir)
    m = b.manifest
    assert m.variant == "dense" and m.window == 20 and m.stride == 1
    assert m.features == ["temperature", "pressure", "vibration", "flow", "power"]
    assert m.threshold.method == "pot" and m.threshold.value > 0
    assert not list(bundle_dir.parent.glob(f".{bundle_dir.name}*"))  # no temp dirs left behind


@pytest.fixture
def copy(bundle_dir, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle_dir, dst)
    return dst


def _edit(path, reseal=True, **changes):
    """Change manifest fields; ``reseal``: update manifest.sha256 to match, as someone who
    means to fool the checksum would (so the schema check behind it is reached)."""
    doc = json.loads((path / "manifest.json").read_text())
    for dotted, value in changes.items():
        node = doc
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    (path / "manifest.json").write_text(json.dumps(doc))
    if reseal:
        (path / MANIFEST_CHECKSUM).write_text(sha256((path / "manifest.json").read_bytes()))


def test_tampered_model_fails_on_checksum(copy):
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(copy)


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"window": 0}, "window"),
        ({"threshold__value": -1}, "threshold.value"),
        ({"scaler__scale": [1, 1, 0, 1, 1]}, "scaler"),
        ({"features": ["a", "b"]}, "scaler has 5 entries for 2 features"),
        ({"surprise": 1}, "surprise"),
        ({"threshold__value": float("inf")}, "threshold.value"),
        ({"scaler__mean": [float("nan"), 0, 0, 0, 0]}, "scaler.mean.0"),
        ({"feature_error_scale": [0, 1, 1, 1, 1]}, "feature_error_scale.0"),
        ({"score__reading_residual": True}, "reading_residual needs residual_center, residual_components"),
        ({"score__residual_weight": [-1.0]}, "score.residual_weight.0"),
    ],
)
def test_invalid_manifest_names_the_field(copy, changes, field):
    _edit(copy, **changes)
    with pytest.raises(BundleError, match="invalid manifest") as exc:
        load_bundle(copy)
    assert field in str(exc.value)


def test_a_renamed_feature_is_refused_by_the_manifest_checksum(copy):
    _edit(copy, reseal=False, features=["temperature", "pressure", "vibration", "flow", "POWER"])
    with pytest.raises(BundleError, match=r"manifest.json: checksum mismatch \(manifest.sha256 says"):
        load_bundle(copy)


def test_new_weights_with_the_model_checksum_updated_are_refused(copy):
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    _edit(copy, reseal=False, checksum=sha256(bytes(data)))
    with pytest.raises(BundleError, match="changed after the bundle was written"):
        load_bundle(copy)


def test_a_bundle_without_a_manifest_checksum_is_refused_naming_the_file(copy):
    (copy / MANIFEST_CHECKSUM).unlink()
    with pytest.raises(BundleError, match=r"missing manifest\.sha256.*not covered by a checksum"):
        load_bundle(copy)
    (copy / MANIFEST_CHECKSUM).write_text(sha256((copy / "manifest.json").read_bytes()) + "\n")
    assert load_bundle(copy).manifest.window == 20  # sealed by hand, as the message says


def test_missing_files(tmp_path):
    with pytest.raises(BundleError, match=r"missing manifest\.json"):
        load_bundle(tmp_path)


def test_graph_shape_must_match_manifest_window(copy):
    _edit(copy, window=21)
    with pytest.raises(BundleError, match="'window'"):
        Scorer(load_bundle(copy), ["CPUExecutionProvider"])


def test_scorer_runs_on_cpu_and_checks_input_shape(bundle_dir):
    scorer = Scorer(load_bundle(bundle_dir), ["CUDAExecutionProvider", "CPUExecutionProvider"], max_batch=7)
    assert scorer.providers[-1] == "CPUExecutionProvider"
    x = np.random.default_rng(0).normal(50, 5, (20, 20, 5)).astype(np.float32)
    batched = scorer.score(x)
    whole = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"], max_batch=1000).score(x)
    np.testing.assert_allclose(batched.scores, whole.scores, rtol=1e-6)
    assert batched.feature_errors.shape == (20, 5)
    with pytest.raises(ValueError):
        scorer.score(x[:, :10])


def test_extreme_readings_score_high_not_nan(bundle_dir):
    scorer = Scorer(load_bundle(bundle_dir), ["CPUExecutionProvider"])
    mean = np.asarray(scorer.manifest.scaler.mean, dtype=np.float32)
    x = np.tile(mean, (3, 20, 1)).astype(np.float32)
    x[1, 5, 2] = 3e38  # finite in float32, overflows once standardised
    x[2, :, :] = -3e38
    s = scorer.score(x).scores
    assert np.isfinite(s).all()
    assert s[0] < scorer.threshold < s[1] and s[2] > scorer.threshold


def test_a_bundle_of_another_format_asks_for_retraining(bundle_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundle_dir, old)
    raw = json.loads((old / "manifest.json").read_text())
    raw["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"'format_version' is 1.*retrain"):
        load_bundle(old)
