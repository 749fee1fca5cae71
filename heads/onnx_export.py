"""Export of fitted heads to ONNX, and verification of the export before anything is published.

sklearn estimators convert with skl2onnx; the converted graph is then trimmed to the contract of
`heads.contract` (one input ``embedding``, one output ``probabilities`` or ``value``) so that the
serving side never needs to know a head's kind. Heads are stored as ONNX, never pickled: loading a
head runs no code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from heads.contract import INPUT_NAME, ML_OPSET, OPSET, output_name
from heads.errors import HeadVerificationError
from heads.session import new_session
from heads.targets import Task

if TYPE_CHECKING:  # kinds import this module; a runtime import would be circular
    from heads.kinds.base import FittedModel

#: Largest tolerated difference between ONNX and the fitted model (probabilities; regression
#: values relative to max(1, |value|)).
TOLERANCE = 1e-4
PRODUCER = "transferd-heads"


def sklearn_to_onnx(estimator: object, embedding_dim: int, task: Task) -> onnx.ModelProto:
    """Converts a fitted sklearn estimator to an ONNX graph honouring the contract.

    Args:
        estimator: A fitted classifier with ``predict_proba`` (classification, multi-label) or a
            fitted regressor with a single output (regression).
        embedding_dim: Width of the ``embedding`` input.
        task: The head's task; picks the output the graph keeps.

    Returns:
        The contract-shaped ONNX model.
    """
    # Imported here: skl2onnx is heavy and only training needs it, never serving.
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    # zipmap=False makes classifiers output a plain float tensor instead of a list of dicts.
    options = None if task is Task.REGRESSION else {id(estimator): {"zipmap": False}}
    converted = convert_sklearn(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, embedding_dim]))],
        options=options,
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    outputs = [o.name for o in converted.graph.output]
    if task is Task.REGRESSION:
        if len(outputs) != 1:
            raise HeadVerificationError(f"regressor converted with outputs {outputs}, expected 1")
        source = outputs[0]
    else:
        if "probabilities" not in outputs:
            raise HeadVerificationError(f"classifier converted without probabilities: {outputs}")
        source = "probabilities"
    return finalize_graph(converted, source, task)


def _used_names(node: onnx.NodeProto) -> Iterable[str]:
    yield from node.input
    # Nodes with subgraphs (Scan, If, Loop) may read outer-scope tensors from inside them.
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
        graphs += list(attribute.graphs)
        for graph in graphs:
            for inner in graph.node:
                yield from _used_names(inner)


def _prune(graph: onnx.GraphProto) -> None:
    """Drops nodes and initializers that no graph output depends on."""
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):  # graph.node is topologically sorted
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(_used_names(node))
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def finalize_graph(model: onnx.ModelProto, source: str, task: Task) -> onnx.ModelProto:
    """Makes ``source`` the graph's only output, under the contract's name and shape.

    Regression outputs ([N, 1] from skl2onnx) are flattened to [N]. Everything the remaining
    output does not depend on (e.g. a classifier's ``label`` output) is pruned.

    Args:
        model: A model whose only input is already ``embedding``.
        source: Name of the tensor that holds the contract output.
        task: The head's task.

    Returns:
        The same model object, edited and checked.
    """
    graph = model.graph
    target = output_name(task)
    source_info = next((o for o in graph.output if o.name == source), None)
    if task is Task.REGRESSION:
        shape_name = f"{target}_shape"
        graph.initializer.append(helper.make_tensor(shape_name, onnx.TensorProto.INT64, [1], [-1]))
        graph.node.append(helper.make_node("Reshape", [source, shape_name], [target]))
        out = helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT, ["N"])
    else:
        if source != target:
            graph.node.append(helper.make_node("Identity", [source], [target]))
        width: int | str = "n_labels"
        if source_info is not None and len(source_info.type.tensor_type.shape.dim) == 2:
            dim = source_info.type.tensor_type.shape.dim[1]
            width = dim.dim_value if dim.HasField("dim_value") else width
        out = helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT, ["N", width])
    del graph.output[:]
    graph.output.append(out)
    _prune(graph)
    model.producer_name = PRODUCER
    onnx.checker.check_model(model)
    return model


def _check_io(session: ort.InferenceSession, task: Task) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != [INPUT_NAME] or output_name(task) not in outputs:
        raise HeadVerificationError(
            f"ONNX head has inputs {inputs} and outputs {outputs}; the contract wants "
            f"input {INPUT_NAME!r} and output {output_name(task)!r}"
        )


def verify_onnx(model: FittedModel, onnx_bytes: bytes, x: np.ndarray, task: Task) -> None:
    """Checks that an ONNX head reproduces a fitted model on the given inputs.

    Classification: the same top label on every row (a row whose two best probabilities are
    within the tolerance is a tie and may go either way) and every probability within
    `TOLERANCE`. Multi-label: every probability within `TOLERANCE`. Regression: every value
    within `TOLERANCE` x max(1, |value|).

    Args:
        model: The fitted model, the reference.
        onnx_bytes: Its serialized ONNX export.
        x: float32 inputs (n, d) to compare on, n >= 1.
        task: The head's task.

    Raises:
        HeadVerificationError: The graph does not load, breaks the contract, or disagrees.
    """
    try:
        session = new_session(onnx_bytes)
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise HeadVerificationError(f"ONNX head does not load: {exc}") from exc
    _check_io(session, task)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    try:
        got = np.asarray(session.run([output_name(task)], {INPUT_NAME: x32})[0], dtype=np.float64)
    except Exception as exc:  # e.g. a graph built for another input width
        raise HeadVerificationError(f"ONNX head fails to run: {exc}") from exc
    want = np.asarray(model.scores(x32), dtype=np.float64)
    if got.shape != want.shape:
        raise HeadVerificationError(f"ONNX output shape {got.shape}, fitted model {want.shape}")
    if not np.all(np.isfinite(got)):
        raise HeadVerificationError("ONNX head outputs non-finite values")
    if task is Task.REGRESSION:
        error = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    else:
        error = np.abs(got - want)
    worst = float(error.max(initial=0.0))
    if worst > TOLERANCE:
        raise HeadVerificationError(
            f"ONNX head differs from the fitted model by up to {worst:.3g} (> {TOLERANCE:g})"
        )
    if task is Task.CLASSIFICATION:
        rows = np.arange(len(want))
        top_got = got.argmax(axis=1)
        # A different argmax is only a disagreement if the fitted model's own choice was clear.
        margin = want[rows, want.argmax(axis=1)] - want[rows, top_got]
        if np.any(margin > 2 * TOLERANCE):
            raise HeadVerificationError("ONNX head predicts other labels than the fitted model")


def export_verified(
    model: FittedModel, embedding_dim: int, x_verify: np.ndarray, task: Task
) -> bytes:
    """Exports a fitted model to ONNX bytes and verifies them (see `verify_onnx`).

    Raises:
        HeadVerificationError: Export failed or the export does not reproduce the model.
    """
    try:
        onnx_bytes = model.to_onnx(embedding_dim).SerializeToString()
    except HeadVerificationError:
        raise
    except Exception as exc:  # converter errors are ours, not the caller's
        raise HeadVerificationError(f"could not export the head to ONNX: {exc}") from exc
    verify_onnx(model, onnx_bytes, x_verify, task)
    return onnx_bytes
