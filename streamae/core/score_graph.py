"""The scoring graph: a bundle's autoencoder extended, at load time, to return per-feature errors.

The exported graph maps ``windows`` ``(m, W, F)`` to ``reconstruction`` ``(m, W, F)`` (and
``code``). Scoring needs only the per-feature error ``(m, F)``: the squared reconstruction
error averaged over time, evenly or with the manifest's time weights (see
``window_score.time_weights``). Computing it inside the graph means a GPU sends ``m × F`` floats
back to the host instead of ``m × W × F``. With the score's ``reading_residual`` the graph
also adds the weighted cross-sensor residual of each window's newest reading
(``window_score.ReadingResidual``). It is added when a scorer loads the bundle, not at export, so
every bundle has it and a recalibrated score spec (new time weights, no re-export) is
honoured.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streamae.core.bundle import INPUT_NAME, OUTPUT_NAME, BundleError
from streamae.core.window_score import ReadingResidual

FEATURE_ERROR_NAME = "feature_error"
_PREFIX = "streamae.feature_error/"  # names of the added nodes and tensors
_REDUCE_AXES_AS_INPUT = 13  # ReduceSum takes its axes as an input from opset 13 on


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """A graph input's shape as ONNX Runtime reports it: sizes, or names of symbolic axes."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def scoring_graph(
    model_bytes: bytes,
    window: int,
    n_features: int,
    weights: np.ndarray | None,
    residual: ReadingResidual | None = None,
    groups: np.ndarray | None = None,
) -> bytes:
    """The bundle's graph with a ``feature_error`` output ``(m, F)`` added; its other outputs
    are kept. ``weights`` ``(W,)`` weight the squared errors over time (None: a plain mean);
    ``residual`` adds the newest reading's weighted cross-sensor residual; ``groups`` ``(F,)``
    name each column's one-hot group (-1: numeric), whose error is the group's cross-entropy
    (:func:`_cross_entropy_nodes`) instead of the squared error.

    Raises :class:`BundleError` (whose message the caller prefixes with the file) when the
    graph cannot be read or does not have the bundle's input and output.
    """
    model, shape = _checked(model_bytes, window, n_features)
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    consts: dict[str, np.ndarray] = {}
    window_error = FEATURE_ERROR_NAME if residual is None else _PREFIX + "window_error"
    elementwise = _PREFIX + "squared"
    nodes = _squared_nodes(elementwise)
    if groups is not None and (np.asarray(groups) >= 0).any():
        elementwise = _PREFIX + "elementwise"
        nodes += _cross_entropy_nodes(_PREFIX + "squared", elementwise, np.asarray(groups), consts)
    nodes += _window_error_nodes(elementwise, window_error, window, weights, opset, consts)
    if residual is not None:
        nodes += _residual_nodes(window_error, residual, consts)

    g.node.extend(nodes)
    g.initializer.extend(numpy_helper.from_array(v, name) for name, v in consts.items())
    batch = shape[0] or None  # the input's batch axis: named (dynamic), or a fixed size
    g.output.append(helper.make_tensor_value_info(FEATURE_ERROR_NAME, TensorProto.FLOAT, [batch, n_features]))
    out: bytes = model.SerializeToString()
    return out


def _checked(model_bytes: bytes, window: int, n_features: int) -> tuple[onnx.ModelProto, list[int | str]]:
    """The graph and its input's shape, once it has the bundle's one input ``(m, W, F)`` and
    its output."""
    try:
        model = onnx.load_from_string(model_bytes)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise BundleError(f"ONNX Runtime cannot load it: {exc}") from None
    g = model.graph
    inputs = [i for i in g.input if i.name not in {t.name for t in g.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise BundleError(f"expected one input '{INPUT_NAME}'")
    outputs = [o.name for o in g.output]
    if OUTPUT_NAME not in outputs:
        raise BundleError(f"has no output '{OUTPUT_NAME}' (has {outputs})")
    if FEATURE_ERROR_NAME in outputs:
        raise BundleError(f"already has an output '{FEATURE_ERROR_NAME}'")
    shape = _dims(inputs[0])
    if len(shape) != 3 or shape[1:] != [window, n_features]:
        raise BundleError(
            f"graph input shape {shape} does not match manifest 'window' ({window}) and "
            f"'features' ({n_features})"
        )
    return model, shape


def _squared_nodes(sq: str) -> list[onnx.NodeProto]:
    diff = _PREFIX + "diff"
    return [
        helper.make_node("Sub", [OUTPUT_NAME, INPUT_NAME], [diff], name=_PREFIX + "sub"),
        helper.make_node("Mul", [diff, diff], [sq], name=_PREFIX + "square"),
    ]


def one_hot_matrices(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For columns' one-hot ``groups`` (-1: numeric): ``same`` ``(F, F)`` (1 where two columns
    share a group, and on the diagonal), ``spread`` (``same`` over the group's width: a
    group's cross-entropy shared evenly by its columns) and the one-hot mask ``(F,)``."""
    g = np.asarray(groups)
    same = ((g[:, None] == g[None, :]) & (g[:, None] >= 0)) | np.eye(len(g), dtype=bool)
    spread = same / same.sum(axis=0, keepdims=True)
    return same.astype(np.float32), spread.astype(np.float32), (g >= 0).astype(np.float32)


def _cross_entropy_nodes(
    squared: str, out: str, groups: np.ndarray, consts: dict[str, np.ndarray]
) -> list[onnx.NodeProto]:
    """``out``: the squared error on numeric columns; on a one-hot group's columns its
    cross-entropy ``-sum(x log softmax(r))`` over the group (the reconstruction read as
    logits), shared evenly by the group's columns: ``training.loss.FieldLoss`` on the host."""
    n = _PREFIX + "ce/"
    same, spread, mask = one_hot_matrices(groups)
    consts.update({n + "same": same, n + "spread": spread, n + "mask": mask, n + "numeric": 1 - mask})
    consts[n + "lo"], consts[n + "hi"] = np.array(-LOGIT_CLIP, np.float32), np.array(LOGIT_CLIP, np.float32)

    def node(op: str, inputs: list[str], output: str) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=output)

    return [
        node("Clip", [OUTPUT_NAME, n + "lo", n + "hi"], n + "logits"),
        node("Exp", [n + "logits"], n + "exp"),
        node("MatMul", [n + "exp", n + "same"], n + "total"),
        node("Log", [n + "total"], n + "log_total"),
        node("Sub", [n + "logits", n + "log_total"], n + "log_p"),
        node("Mul", [INPUT_NAME, n + "log_p"], n + "x_log_p"),
        node("Neg", [n + "x_log_p"], n + "nll"),
        node("MatMul", [n + "nll", n + "spread"], n + "shared"),
        node("Mul", [n + "shared", n + "mask"], n + "one_hot"),
        node("Mul", [squared, n + "numeric"], n + "numbers"),
        node("Add", [n + "numbers", n + "one_hot"], out),
    ]


#: logits are clipped to ±this before the softmax, so exp stays finite in float32
LOGIT_CLIP = 30.0


def _window_error_nodes(
    sq: str,
    window_error: str,
    window: int,
    weights: np.ndarray | None,
    opset: int,
    consts: dict[str, np.ndarray],
) -> list[onnx.NodeProto]:
    """``window_error (m, F)``: the elementwise error ``sq`` summed over time with
    ``weights``, or its plain mean over time when there are none."""
    nodes: list[onnx.NodeProto] = []
    if weights is None:
        to_sum, summed = sq, _PREFIX + "total"
    else:
        # (W, 1) broadcasts over (m, W, F) along time; the sum of the products is the einsum
        to_sum, summed = _PREFIX + "weighted", window_error
        consts[_PREFIX + "weights"] = np.asarray(weights, dtype=np.float32).reshape(window, 1)
        nodes.append(helper.make_node("Mul", [sq, _PREFIX + "weights"], [to_sum], name=_PREFIX + "weigh"))
    if opset >= _REDUCE_AXES_AS_INPUT:
        consts[_PREFIX + "axes"] = np.array([1], dtype=np.int64)
        reduce = helper.make_node("ReduceSum", [to_sum, _PREFIX + "axes"], [summed], keepdims=0)
    else:
        reduce = helper.make_node("ReduceSum", [to_sum], [summed], axes=[1], keepdims=0)
    reduce.name = _PREFIX + "sum"
    nodes.append(reduce)
    if weights is None:
        # the host formula's mean: a sum over time, then one division by W
        consts[_PREFIX + "window"] = np.array(window, dtype=np.float32)
        nodes.append(
            helper.make_node("Div", [summed, _PREFIX + "window"], [window_error], name=_PREFIX + "mean")
        )
    return nodes


def _residual_nodes(
    window_error: str, r: ReadingResidual, consts: dict[str, np.ndarray]
) -> list[onnx.NodeProto]:
    """``feature_error = window_error + weight * (d - d C Cᵀ)²`` with ``d`` the newest reading
    less the centre (``ReadingResidual.add_to`` on the host)."""
    n = _PREFIX + "residual/"
    consts[n + "newest"] = np.array(-1, dtype=np.int64)  # a scalar index drops the time axis
    components = np.asarray(r.components, np.float32)  # the graph is float32 throughout
    consts[n + "center"] = np.asarray(r.center, np.float32)
    consts[n + "components"] = components
    consts[n + "components_t"] = np.ascontiguousarray(components.T)
    consts[n + "weight"] = np.asarray(r.weight, np.float32)

    def node(op: str, inputs: list[str], output: str) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=output)

    gather = node("Gather", [INPUT_NAME, n + "newest"], n + "last")
    gather.attribute.append(helper.make_attribute("axis", 1))

    return [
        gather,
        node("Sub", [n + "last", n + "center"], n + "centred"),
        node("MatMul", [n + "centred", n + "components"], n + "coords"),
        node("MatMul", [n + "coords", n + "components_t"], n + "on_axes"),
        node("Sub", [n + "centred", n + "on_axes"], n + "off_axes"),
        node("Mul", [n + "off_axes", n + "off_axes"], n + "squared"),
        node("Mul", [n + "squared", n + "weight"], n + "weighted"),
        helper.make_node("Add", [window_error, n + "weighted"], [FEATURE_ERROR_NAME], name=n + "add"),
    ]
