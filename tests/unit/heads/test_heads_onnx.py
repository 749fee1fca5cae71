"""ONNX exports follow the I/O contract, match the fitted model, and bad exports are rejected."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from heads import HeadVerificationError, Task
from heads.kinds import get_kind
from heads.onnx_export import export_verified, verify_onnx
from heads.params import parse_params
from heads.session import new_session
from heads.targets import encode_targets
from tests.unit.heads.synthetic import blobs, class_targets, multi_label_targets, regression_targets

FITS = [
    ("logistic_regression", Task.CLASSIFICATION, {}),
    ("logistic_regression", Task.MULTI_LABEL, {}),
    ("logistic_regression", Task.CLASSIFICATION, {"C": "1000"}),  # large logits
    ("linear_svm", Task.CLASSIFICATION, {}),
    ("linear_svm", Task.MULTI_LABEL, {}),
    ("knn", Task.CLASSIFICATION, {"metric": "cosine", "weights": "distance"}),
    ("knn", Task.CLASSIFICATION, {"metric": "euclidean", "weights": "uniform"}),
    ("knn", Task.MULTI_LABEL, {"metric": "euclidean", "weights": "distance"}),
    ("ridge", Task.REGRESSION, {}),
    ("mlp", Task.CLASSIFICATION, {}),
    ("mlp", Task.MULTI_LABEL, {}),
    ("mlp", Task.REGRESSION, {}),
]


def _fit(kind: str, task: Task, params: dict[str, str], seed: int = 0, n_classes: int = 3):
    x, y = blobs(90, n_classes, noise=0.5, seed=seed)
    raw = {
        Task.CLASSIFICATION: class_targets,
        Task.MULTI_LABEL: multi_label_targets,
        Task.REGRESSION: regression_targets,
    }[task](y)
    targets = encode_targets(raw)
    head_kind = get_kind(kind, task)
    return head_kind.fit(x, targets, parse_params(head_kind.params, params)).model, targets, x


@pytest.mark.parametrize(("kind", "task", "params"), FITS)
def test_export_follows_contract_and_matches_fitted_model(
    kind: str, task: Task, params: dict[str, str]
) -> None:
    model, targets, x = _fit(kind, task, params)
    onnx_bytes = model.to_onnx(x.shape[1]).SerializeToString()
    session = new_session(onnx_bytes)
    (inp,) = session.get_inputs()
    assert inp.name == "embedding" and inp.type == "tensor(float)" and inp.shape[1] == x.shape[1]
    outputs = session.get_outputs()
    assert len(outputs) == 1

    fresh, _ = blobs(50, 3, noise=1.0, seed=99)  # other points than the training ones
    got = session.run(None, {"embedding": fresh})[0]
    want = model.scores(fresh)
    assert got.dtype == np.float32
    if task is Task.REGRESSION:
        assert outputs[0].name == "value" and got.shape == (50,)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:
        assert outputs[0].name == "probabilities" and got.shape == (50, len(targets.labels))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
        if task is Task.CLASSIFICATION:
            np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
            np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    verify_onnx(model, onnx_bytes, fresh, task)  # does not raise


def test_export_verified_returns_loadable_bytes() -> None:
    model, _, x = _fit("logistic_regression", Task.CLASSIFICATION, {})
    onnx_bytes = export_verified(model, x.shape[1], x[:10], Task.CLASSIFICATION)
    onnx.checker.check_model(onnx.load_from_string(onnx_bytes))


@pytest.mark.parametrize(
    ("kind", "task"),
    [
        ("logistic_regression", Task.CLASSIFICATION),
        ("knn", Task.MULTI_LABEL),
        ("ridge", Task.REGRESSION),
        ("mlp", Task.CLASSIFICATION),
        ("mlp", Task.MULTI_LABEL),
        ("mlp", Task.REGRESSION),
    ],
)
def test_verification_rejects_a_model_onnx_pair_that_disagree(kind: str, task: Task) -> None:
    model, _, x = _fit(kind, task, {}, seed=0)
    other, _, _ = _fit(kind, task, {}, seed=1)  # same shapes, other data
    wrong_bytes = other.to_onnx(x.shape[1]).SerializeToString()
    with pytest.raises(HeadVerificationError):
        verify_onnx(model, wrong_bytes, x, task)


def test_verification_rejects_permuted_label_columns() -> None:
    model, _, x = _fit("logistic_regression", Task.CLASSIFICATION, {})
    graph = model.to_onnx(x.shape[1])
    # Swap the first two probability columns at the very end of the graph.
    for node in graph.graph.node:
        node.output[:] = ["raw_probabilities" if o == "probabilities" else o for o in node.output]
    graph.graph.initializer.append(
        helper.make_tensor("perm", onnx.TensorProto.INT64, [3], [1, 0, 2])
    )
    graph.graph.node.append(
        helper.make_node("Gather", ["raw_probabilities", "perm"], ["probabilities"], axis=1)
    )
    with pytest.raises(HeadVerificationError, match="differs"):
        verify_onnx(model, graph.SerializeToString(), x, Task.CLASSIFICATION)


def test_verification_rejects_contract_breaks_and_garbage() -> None:
    model, _, x = _fit("logistic_regression", Task.CLASSIFICATION, {})
    graph = model.to_onnx(x.shape[1])
    graph.graph.output[0].name = "scores"
    graph.graph.node[-1].output[0] = "scores"
    with pytest.raises(HeadVerificationError, match="contract"):
        verify_onnx(model, graph.SerializeToString(), x, Task.CLASSIFICATION)
    with pytest.raises(HeadVerificationError, match="does not load"):
        verify_onnx(model, b"not an onnx model", x, Task.CLASSIFICATION)
    # A classifier graph offered as a regressor breaks the contract as well.
    with pytest.raises(HeadVerificationError):
        verify_onnx(model, model.to_onnx(x.shape[1]).SerializeToString(), x, Task.REGRESSION)
