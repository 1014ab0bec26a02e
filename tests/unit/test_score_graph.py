"""The scoring graph (per-feature errors computed inside ONNX Runtime), I/O binding, and the
CUDA provider settings: each equal to, or fed into, what it replaces."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamae.core.bundle import CODE_NAME, INPUT_NAME, OUTPUT_NAME, Bundle, BundleError
from streamae.core.config import VARIANTS, ConfigError, ModelSettings, load_settings
from streamae.core.manifest import ScoreSpec
from streamae.core.score_graph import FEATURE_ERROR_NAME, scoring_graph
from streamae.core.scoring import Scorer
from streamae.core.session import with_options
from streamae.core.window_score import feature_errors, pool_features, time_weights

CPU = ["CPUExecutionProvider"]
SPECS = {
    "uniform": ScoreSpec(),
    "recent": ScoreSpec(time_weighting="recent"),
    "recent-h2-norm-max": ScoreSpec(
        time_weighting="recent", half_life=2, feature_norm=True, feature_pool="max"
    ),
    "uniform-norm": ScoreSpec(feature_norm=True),
}
# float32 sums in another order: a few units in the last place of the error
RTOL, ATOL = 2e-5, 1e-9


def _with_spec(bundle: Bundle, spec: ScoreSpec) -> Bundle:
    """The bundle with another score spec, as recalibration writes it (same graph)."""
    return Bundle(bundle.path, bundle.manifest.model_copy(update={"score": spec}), bundle.model_bytes)


def _host_reference(bundle: Bundle, x: np.ndarray, spec: ScoreSpec) -> np.ndarray:
    """Per-feature errors the way scoring computed them before the graph did: the bundle's own
    graph's reconstruction brought back, and the host formula applied."""
    session = ort.InferenceSession(bundle.model_bytes, providers=CPU)
    (recon,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    return feature_errors(x, recon, time_weights(spec, bundle.manifest.window))


def _windows(bundle: Bundle, n: int = 64, seed: int = 0) -> np.ndarray:
    m = bundle.manifest
    mean = np.asarray(m.scaler.mean, dtype=np.float32)
    scale = np.asarray(m.scaler.scale, dtype=np.float32)
    z = np.random.default_rng(seed).normal(size=(n, m.window, len(m.features))).astype(np.float32)
    return mean + 2 * scale * z  # readings around the training data, some far out


@pytest.mark.parametrize("spec_id", list(SPECS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_feature_errors_equal_the_host_formula(variant, spec_id, variant_bundles):
    spec = SPECS[spec_id]
    bundle = _with_spec(variant_bundles[variant].bundle, spec)
    scorer = Scorer(bundle, CPU, max_batch=25)  # chunks of 25, 25 and 14
    raw = _windows(bundle)
    got = scorer.score(raw)
    want = _host_reference(bundle, scorer.scale(raw), spec)
    assert got.feature_errors.dtype == np.float32 and got.feature_errors.shape == want.shape
    np.testing.assert_allclose(got.feature_errors, want, rtol=RTOL, atol=ATOL)
    scale = np.asarray(bundle.manifest.feature_error_scale, dtype=np.float32)
    np.testing.assert_allclose(got.scores, pool_features(want, spec, scale), rtol=RTOL, atol=ATOL)


def test_the_scoring_graph_keeps_the_bundles_outputs(variant_bundles):
    bundle = variant_bundles["dense"].bundle
    scorer = Scorer(bundle, CPU)
    assert [o.name for o in scorer.session.get_outputs()] == [OUTPUT_NAME, CODE_NAME, FEATURE_ERROR_NAME]
    x = scorer.scale(_windows(bundle, 5))
    recon, code = ort.InferenceSession(bundle.model_bytes, providers=CPU).run(None, {INPUT_NAME: x})
    ours = scorer.session.run([OUTPUT_NAME, CODE_NAME], {INPUT_NAME: x})
    np.testing.assert_array_equal(ours[0], recon)
    np.testing.assert_array_equal(ours[1], code)
    np.testing.assert_array_equal(scorer.encode(_windows(bundle, 5)), code)


def _toy_graph(opset: int, window: int = 6, n_features: int = 3) -> bytes:
    """``reconstruction = 0.5 * windows + 1``: a stand-in autoencoder of a given opset."""
    nodes = [
        helper.make_node("Mul", [INPUT_NAME, "half"], ["scaled"]),
        helper.make_node("Add", ["scaled", "one"], [OUTPUT_NAME]),
    ]
    consts = [
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    shape = ["batch", window, n_features]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape)],
        consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7  # every ONNX Runtime >= 1.18 reads it
    return model.SerializeToString()


@pytest.mark.parametrize("opset", [11, 17])  # ReduceSum's axes: an attribute before 13, then an input
@pytest.mark.parametrize("weighting", ["uniform", "recent"])
def test_the_feature_error_output_on_either_reduce_sum_form(opset, weighting):
    weights = time_weights(ScoreSpec(time_weighting=weighting, half_life=1.5), 6)
    session = ort.InferenceSession(scoring_graph(_toy_graph(opset), 6, 3, weights), providers=CPU)
    x = np.random.default_rng(3).normal(size=(9, 6, 3)).astype(np.float32)
    (got,) = session.run([FEATURE_ERROR_NAME], {INPUT_NAME: x})
    np.testing.assert_allclose(got, feature_errors(x, 0.5 * x + 1, weights), rtol=RTOL, atol=ATOL)


def test_the_scoring_graph_refuses_what_it_cannot_extend():
    with pytest.raises(BundleError, match="cannot load"):
        scoring_graph(b"not a model", 6, 3, None)
    with pytest.raises(BundleError, match="'window' \\(7\\)"):
        scoring_graph(_toy_graph(17), 7, 3, None)
    model = onnx.load_from_string(_toy_graph(17))
    model.graph.output[0].name = "other"
    model.graph.node[1].output[0] = "other"
    with pytest.raises(BundleError, match="has no output 'reconstruction'"):
        scoring_graph(model.SerializeToString(), 6, 3, None)
    twice = scoring_graph(_toy_graph(17), 6, 3, None)
    with pytest.raises(BundleError, match="already has an output 'feature_error'"):
        scoring_graph(twice, 6, 3, None)


@pytest.mark.parametrize("spec_id", ["uniform", "recent"])
def test_io_binding_scores_equal_the_plain_session_run(spec_id, variant_bundles):
    bundle = _with_spec(variant_bundles["conv"].bundle, SPECS[spec_id])
    plain = Scorer(bundle, CPU, max_batch=7, io_binding="never")
    bound = Scorer(bundle, CPU, max_batch=7, io_binding="always")
    assert bound.io_bound and not plain.io_bound
    assert not Scorer(bundle, CPU, io_binding="cuda").io_bound  # no CUDA provider in use here
    for n, seed in ((20, 1), (3, 2), (7, 3)):  # several chunks, then fewer rows in the reused buffer
        raw = _windows(bundle, n, seed)
        a, b = plain.score(raw), bound.score(raw)
        np.testing.assert_array_equal(b.feature_errors, a.feature_errors)
        np.testing.assert_array_equal(b.scores, a.scores)


def test_cuda_settings_become_provider_options(monkeypatch):
    assert ModelSettings().cuda_provider_options() == {
        "device_id": "0",
        "arena_extend_strategy": "kNextPowerOfTwo",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
    }
    monkeypatch.setenv("STREAMAE_MODEL__CUDA_DEVICE_ID", "1")
    monkeypatch.setenv("STREAMAE_MODEL__CUDA_ARENA_EXTEND_STRATEGY", "kSameAsRequested")
    monkeypatch.setenv("STREAMAE_MODEL__CUDA_CUDNN_CONV_ALGO_SEARCH", "HEURISTIC")
    monkeypatch.setenv("STREAMAE_MODEL__CUDA_GPU_MEM_LIMIT_BYTES", str(2 << 30))
    monkeypatch.setenv("STREAMAE_MODEL__IO_BINDING", "false")
    m = load_settings().model
    assert m.cuda_provider_options() == {
        "device_id": "1",
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC",
        "gpu_mem_limit": str(2 << 30),
    }
    assert m.io_binding is False
    monkeypatch.setenv("STREAMAE_MODEL__CUDA_CUDNN_CONV_ALGO_SEARCH", "FASTEST")
    with pytest.raises(ConfigError, match="STREAMAE_MODEL__CUDA_CUDNN_CONV_ALGO_SEARCH"):
        load_settings()


def test_options_go_to_their_provider_only():
    opts = {"CUDAExecutionProvider": {"device_id": "0"}}
    assert with_options(["CUDAExecutionProvider", "CPUExecutionProvider"], opts) == [
        ("CUDAExecutionProvider", {"device_id": "0"}),
        "CPUExecutionProvider",
    ]
    assert with_options(["CPUExecutionProvider"], opts) == ["CPUExecutionProvider"]


def test_a_configured_scorer_takes_the_cuda_options_and_falls_back_to_cpu(variant_bundles, monkeypatch):
    monkeypatch.setenv("STREAMAE_MODEL__CUDA_GPU_MEM_LIMIT_BYTES", str(1 << 30))
    bundle = variant_bundles["dense"].bundle
    scorer = Scorer.configured(bundle, load_settings())
    raw = _windows(bundle, 10)
    np.testing.assert_array_equal(scorer.score(raw).scores, Scorer(bundle, CPU).score(raw).scores)
    if "CUDAExecutionProvider" not in scorer.providers:
        assert not scorer.io_bound


def test_io_binding_with_one_window_per_run_scores_as_the_plain_session(variant_bundles):
    """A single row runs as two (ONNX Runtime's one-row kernel rounds differently); the
    binding path's staging buffer must hold those two even at ``max_batch=1``."""
    bundle = variant_bundles["dense"].bundle
    raw = _windows(bundle, 5, 4)
    plain = Scorer(bundle, CPU, io_binding="never").score(raw)
    bound = Scorer(bundle, CPU, max_batch=1, io_binding="always").score(raw)
    np.testing.assert_array_equal(bound.feature_errors, plain.feature_errors)
    np.testing.assert_array_equal(bound.scores, plain.scores)
