"""A hand-built ONNX graph for k-nearest-neighbour heads.

skl2onnx's KNN converter does not reproduce sklearn's ``weights="distance"`` (it differs by up to
0.2 in probability even away from training points), computes distances in float32 through a slow
``Scan``, and has no multi-label form. This graph is short and exact enough to verify at 1e-4:

* distances in float64, with the same formulas as sklearn's brute force (cosine: 1 - cosine
  similarity clipped to [0, 2]; euclidean: sqrt(max(|x|^2 - 2 x.t + |t|^2, 0)));
* the k nearest by TopK over distances rounded to multiples of 1 / `TIE_SCALE`: ties (duplicated
  examples) go to the earlier training example, as in `heads.kinds.knn.KnnModel`;
* probabilities = (weighted) mean over neighbours of the neighbours' one-hot / indicator rows;
  ``distance`` weights are 1 / max(d, 1e-12), so that neighbours at distance zero dominate as in
  sklearn (which gives them weight 1 and the others 0) to within far less than the tolerance.

The training embeddings are stored as float32 (exactly what was fitted on) and cast inside.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from heads.contract import INPUT_NAME, OPSET, PROBABILITIES
from heads.onnx_export import PRODUCER

_D = TensorProto.DOUBLE
#: Below any real distance, above zero: turns sklearn's "zero distance wins" into a huge weight.
MIN_DISTANCE = 1e-12
#: Distances are rounded to multiples of 1/TIE_SCALE before ranking, so that float noise between
#: implementations cannot order neighbours that are, for all purposes, equally far.
TIE_SCALE = float(2**30)
#: Norm floor for cosine: sklearn leaves a zero vector at zero; so does dividing by this floor.
MIN_NORM = 1e-300


def _const(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(value, name)


def build_knn_graph(
    train_x: np.ndarray,
    indicator: np.ndarray,
    n_neighbors: int,
    metric: str,
    weights: str,
) -> onnx.ModelProto:
    """Builds the ONNX graph of a fitted KNN head.

    Args:
        train_x: float32 training embeddings (m, d).
        indicator: 0/1 matrix (m, n_labels): one-hot classes (classification) or present labels
            (multi-label).
        n_neighbors: k, at most m.
        metric: ``cosine`` or ``euclidean``.
        weights: ``uniform`` or ``distance``.

    Returns:
        A checked model with input ``embedding`` [N, d] and output ``probabilities`` [N, n_labels].
    """
    m, d = train_x.shape
    n_labels = indicator.shape[1]
    inits = [
        _const("train_x", np.ascontiguousarray(train_x, dtype=np.float32)),
        _const("indicator", np.ascontiguousarray(indicator, dtype=np.float32)),
        _const("k", np.array([n_neighbors], dtype=np.int64)),
        _const("zero", np.array(0.0)),
        _const("one", np.array(1.0)),
        _const("two", np.array(2.0)),
        _const("min_norm", np.array(MIN_NORM)),
        _const("min_distance", np.array(MIN_DISTANCE)),
        _const("tie_scale", np.array(TIE_SCALE)),
        _const("axis1", np.array([1], dtype=np.int64)),
        _const("axis2", np.array([2], dtype=np.int64)),
    ]
    node = helper.make_node
    nodes = [
        node("Cast", [INPUT_NAME], ["x"], to=_D),
        node("Cast", ["train_x"], ["t"], to=_D),
        node("Cast", ["indicator"], ["y"], to=_D),
    ]
    if metric == "cosine":
        for v in ("x", "t"):  # row-normalise both sides
            nodes += [
                node("ReduceSumSquare", [v], [f"{v}_sq"], axes=[1], keepdims=1),
                node("Sqrt", [f"{v}_sq"], [f"{v}_norm"]),
                node("Max", [f"{v}_norm", "min_norm"], [f"{v}_norm_safe"]),
                node("Div", [v, f"{v}_norm_safe"], [f"{v}_unit"]),
            ]
        nodes += [
            node("Transpose", ["t_unit"], ["t_unit_T"], perm=[1, 0]),
            node("MatMul", ["x_unit", "t_unit_T"], ["similarity"]),
            node("Sub", ["one", "similarity"], ["raw_distance"]),
            node("Max", ["raw_distance", "zero"], ["low_clipped"]),
            node("Min", ["low_clipped", "two"], ["distance"]),
        ]
    else:
        nodes += [
            node("ReduceSumSquare", ["x"], ["x_sq"], axes=[1], keepdims=1),  # [N, 1]
            node("Mul", ["t", "t"], ["t_squares"]),
            node("ReduceSum", ["t_squares", "axis1"], ["t_sq_col"], keepdims=1),  # [m, 1]
            node("Transpose", ["t_sq_col"], ["t_sq"], perm=[1, 0]),  # [1, m]
            node("Transpose", ["t"], ["t_T"], perm=[1, 0]),
            node("MatMul", ["x", "t_T"], ["dot"]),
            node("Mul", ["two", "dot"], ["two_dot"]),
            node("Sub", ["x_sq", "two_dot"], ["partial"]),
            node("Add", ["partial", "t_sq"], ["raw_sq_distance"]),
            node("Max", ["raw_sq_distance", "zero"], ["sq_distance"]),
            node("Sqrt", ["sq_distance"], ["distance"]),
        ]
    nodes += [
        node("Mul", ["distance", "tie_scale"], ["scaled_distance"]),
        node("Round", ["scaled_distance"], ["rank_key"]),  # half to even, like np.round
        node("Neg", ["rank_key"], ["neg_rank_key"]),
        # ONNX TopK puts the lower index first among equal values.
        node("TopK", ["neg_rank_key", "k"], ["_", "nearest"], axis=1, largest=1, sorted=1),
        node("Gather", ["y", "nearest"], ["neighbour_y"], axis=0),  # [N, k, n_labels]
    ]
    if weights == "uniform":
        nodes.append(node("ReduceMean", ["neighbour_y"], ["p"], axes=[1], keepdims=0))
    else:
        nodes += [
            node("GatherElements", ["distance", "nearest"], ["nearest_distance"], axis=1),
            node("Max", ["nearest_distance", "min_distance"], ["safe_distance"]),
            node("Reciprocal", ["safe_distance"], ["w"]),
            node("Unsqueeze", ["w", "axis2"], ["w3"]),
            node("Mul", ["neighbour_y", "w3"], ["weighted"]),
            node("ReduceSum", ["weighted", "axis1"], ["numerator"], keepdims=0),
            node("ReduceSum", ["w", "axis1"], ["denominator"], keepdims=1),
            node("Div", ["numerator", "denominator"], ["p"]),
        ]
    nodes.append(node("Cast", ["p"], [PROBABILITIES], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "knn_head",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", n_labels])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER
    )
    model.ir_version = 8  # what opset 17 needs; keeps older onnxruntime builds able to load it
    onnx.checker.check_model(model)
    return model
