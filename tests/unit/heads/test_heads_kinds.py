"""Every kind x task trains on separable data; defaults are tuned at least as well as sklearn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from heads import LoadedHead, Task, TrainedHead, train_head
from heads.kinds.linear_svm import C_GRID as SVM_GRID
from heads.kinds.logistic import C_GRID as LR_GRID
from tests.unit.heads.synthetic import blobs, class_targets, multi_label_targets, regression_targets

N_TRAIN, N_TEST, N_BLOBS = 200, 100, 4


def _targets(task: Task, y: np.ndarray) -> list:
    if task is Task.CLASSIFICATION:
        return class_targets(y)
    if task is Task.MULTI_LABEL:
        return multi_label_targets(y)
    return regression_targets(y)


def _load(head: TrainedHead) -> LoadedHead:
    card = head.to_card(tenant="t", name="h", version=1, backbone="b", backbone_fingerprint="f")
    return LoadedHead.from_bytes(card, head.onnx_bytes)


CASES = [
    ("logistic_regression", Task.CLASSIFICATION, {}),
    ("logistic_regression", Task.MULTI_LABEL, {}),
    ("linear_svm", Task.CLASSIFICATION, {}),
    ("linear_svm", Task.MULTI_LABEL, {}),
    ("knn", Task.CLASSIFICATION, {}),
    ("knn", Task.MULTI_LABEL, {}),
    ("knn", Task.CLASSIFICATION, {"metric": "euclidean", "weights": "distance"}),
    ("knn", Task.MULTI_LABEL, {"weights": "distance", "n_neighbors": "7"}),
    ("ridge", Task.REGRESSION, {}),
    ("mlp", Task.CLASSIFICATION, {}),
    ("mlp", Task.MULTI_LABEL, {}),
    ("mlp", Task.REGRESSION, {}),
    ("mlp", Task.CLASSIFICATION, {"hidden": "32", "dropout": "0.0", "class_weight": "none"}),
]


@pytest.mark.parametrize(("kind", "task", "params"), CASES)
def test_kind_learns_separable_data(kind: str, task: Task, params: dict[str, str]) -> None:
    x, y = blobs(N_TRAIN + N_TEST, N_BLOBS, seed=11)
    targets = _targets(task, y)
    head = train_head(kind, x[:N_TRAIN], targets[:N_TRAIN], params)
    assert head.summary.kind == kind and head.summary.task is task
    assert head.summary.num_examples == N_TRAIN and head.summary.embedding_dim == x.shape[1]
    assert head.summary.metrics["num_train"] == 160 and head.summary.metrics["num_validation"] == 40
    assert all(np.isfinite(v) for v in head.summary.metrics.values())
    for key, value in params.items():
        assert head.summary.params[key] == value

    predictions = _load(head).predict(x[N_TRAIN:])
    truth = targets[N_TRAIN:]
    if task is Task.CLASSIFICATION:
        assert (
            head.summary.metrics["accuracy"] >= 0.9 and head.summary.metrics["macro_f1"] >= 0.9
        )  # chance .25
        assert sum(head.summary.metrics[f"support/class_{k}"] for k in range(N_BLOBS)) == 40
        assert np.mean([p.label == t for p, t in zip(predictions, truth, strict=True)]) >= 0.9
    elif task is Task.MULTI_LABEL:
        assert head.summary.labels == ["a", "b", "odd"]
        assert (
            head.summary.metrics["micro_f1"] >= 0.9
            and head.summary.metrics["subset_accuracy"] >= 0.8
        )
        exact = [sorted(p.labels) == sorted(t) for p, t in zip(predictions, truth, strict=True)]
        assert np.mean(exact) >= 0.8
    else:
        assert head.summary.labels == []
        assert head.summary.metrics["r2"] >= 0.9 and head.summary.metrics["mae"] < 1.0
        values = np.array([p.value for p in predictions])
        assert np.corrcoef(values, truth)[0, 1] > 0.95


def test_tuned_c_comes_from_the_grid_and_given_c_is_kept() -> None:
    x, y = blobs(120, 3, noise=0.5, seed=2)
    assert float(train_head("", x, class_targets(y)).summary.params["C"]) in LR_GRID
    assert float(train_head("linear_svm", x, class_targets(y)).summary.params["C"]) in SVM_GRID
    assert train_head("", x, class_targets(y), {"C": "3.5"}).summary.params["C"] == "3.5"


def test_too_small_to_tune_uses_default_c() -> None:
    x, y = blobs(10, 2, seed=2)  # 5 per class: fewer than 2 per fold with 3 folds
    assert train_head("", x, class_targets(y)).summary.params["C"] == "1.0"


def test_defaults_at_least_as_accurate_as_plain_sklearn() -> None:
    """Overlapping blobs in 384-d with few examples: regularisation matters."""
    rng = np.random.default_rng(5)
    dim, n_classes = 384, 5
    centers = rng.normal(size=(n_classes, dim)) * 0.1

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % n_classes
        return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y

    x, y = sample(400)
    x_test, y_test = sample(2000)
    head = train_head("logistic_regression", x, class_targets(y))
    predicted = [p.label for p in _load(head).predict(x_test)]
    head_accuracy = np.mean([p == t for p, t in zip(predicted, class_targets(y_test), strict=True)])
    plain_accuracy = LogisticRegression().fit(x, y).score(x_test, y_test)
    assert head_accuracy >= plain_accuracy, (head.summary.params, head_accuracy, plain_accuracy)


def test_rare_classes_train_with_every_kind() -> None:
    x, y = blobs(60, 3, seed=4)
    targets = class_targets(y)
    targets[0], targets[1], targets[2] = "single", "pair", "pair"
    for kind in ("logistic_regression", "linear_svm", "knn", "mlp"):
        head = train_head(kind, x, targets)
        assert head.summary.labels == ["class_0", "class_1", "class_2", "pair", "single"]
        assert head.summary.metrics["support/single"] == 0  # the singleton stayed in training
        scores = _load(head).predict(x[:4], top_k=0)[0].scores
        assert sorted(label for label, _ in scores) == head.summary.labels
        assert sum(p for _, p in scores) == pytest.approx(1.0, abs=1e-5)


def test_multi_label_with_label_on_every_example() -> None:
    x, y = blobs(80, 4, seed=6)
    targets = [["always", *labels] for labels in multi_label_targets(y)]
    for kind in ("logistic_regression", "linear_svm", "knn", "mlp"):
        head = train_head(kind, x, targets)
        prediction = _load(head).predict(x[:5])
        assert all("always" in p.labels for p in prediction)


def test_knn_distance_weights_on_duplicate_points() -> None:
    x, y = blobs(40, 2, seed=8)
    x = np.concatenate([x, x[:10]])  # exact duplicates: zero distances during verification
    targets = class_targets(np.concatenate([y, y[:10]]))
    for metric in ("cosine", "euclidean"):
        head = train_head("knn", x, targets, {"weights": "distance", "metric": metric})
        prediction = _load(head).predict(x[:3])
        assert [p.label for p in prediction] == targets[:3]
        assert all(p.scores[0][1] > 0.9999 for p in prediction)


def test_no_validation_part_reports_counts_only() -> None:
    x, y = blobs(30, 3, seed=9)
    head = train_head("", x, class_targets(y), validation_fraction=0.0)
    assert head.summary.metrics == {"num_train": 30.0, "num_validation": 0.0}
    one = train_head("ridge", x[:3], regression_targets(y[:3]), validation_fraction=0.5)
    assert (
        one.summary.metrics["num_validation"] == 1.0
        and "r2" not in one.summary.metrics
        and "mae" in one.summary.metrics
    )


def test_progress_reports_stages_in_order_and_can_cancel() -> None:
    x, y = blobs(40, 2, seed=10)
    seen: list[tuple[str, float]] = []
    train_head("", x, class_targets(y), progress=lambda s, f: seen.append((s, f)))
    assert [s for s, _ in seen] == ["split", "fit", "evaluate", "refit", "export", "done"]
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0

    class Cancelled(Exception):
        pass

    def cancel(stage: str, fraction: float) -> None:
        if stage == "evaluate":
            raise Cancelled

    with pytest.raises(Cancelled):
        train_head("", x, class_targets(y), progress=cancel)


def test_training_is_deterministic() -> None:
    x, y = blobs(100, 3, noise=0.4, seed=12)
    first = train_head("linear_svm", x, class_targets(y))
    second = train_head("linear_svm", x, class_targets(y))
    assert (
        first.summary.metrics == second.summary.metrics
        and first.summary.params == second.summary.params
    )
    assert first.summary.data_hash == second.summary.data_hash


def test_thousand_examples_train_in_seconds() -> None:
    """1000 x 384 with defaults (C tuned) takes well under a second here; 20 s is a loud alarm."""
    import time

    x, y = blobs(1000, 10, noise=0.6, seed=13)
    start = time.perf_counter()
    head = train_head("", x, class_targets(y))
    assert time.perf_counter() - start < 20.0
    assert head.summary.metrics["num_validation"] == 200


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_predicts_as_sklearn(metric: str, weights: str) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    from heads.kinds import get_kind
    from heads.targets import encode_targets

    x, y = blobs(80, 3, noise=0.8, seed=14)
    fresh, _ = blobs(40, 3, noise=0.8, seed=15)
    params = {"n_neighbors": 7, "metric": metric, "weights": weights}
    targets = encode_targets(class_targets(y))
    model = get_kind("knn").fit(x, targets, params).model
    reference = KNeighborsClassifier(algorithm="brute", **params).fit(x, targets.y)
    np.testing.assert_allclose(model.scores(fresh), reference.predict_proba(fresh), atol=1e-9)
    multi = encode_targets(multi_label_targets(y))
    model = get_kind("knn").fit(x, multi, params).model
    reference = KNeighborsClassifier(algorithm="brute", **params).fit(x, multi.y)
    present = np.column_stack([p[:, 1] for p in reference.predict_proba(fresh)])
    np.testing.assert_allclose(model.scores(fresh), present, atol=1e-9)


@pytest.mark.parametrize("k", ["1", "2", "5"])
def test_knn_duplicates_with_conflicting_labels(k: str) -> None:
    """Ties at the k-th neighbour go to the earlier example, in the model and its ONNX alike."""
    x, _ = blobs(10, 2, seed=16)
    x = np.repeat(x, 2, axis=0)  # every embedding twice: first labelled a, then b
    targets = ["a", "b"] * 10
    head = train_head("knn", x, targets, {"n_neighbors": k}, validation_fraction=0.0)
    prediction = _load(head).predict(x[:1])[0]
    assert prediction.label == "a"
    expected = {"1": 1.0, "2": 0.5, "5": 0.6}[k]  # k=5: a, b, then the next pair's a
    assert dict(prediction.scores)["a"] == pytest.approx(expected, abs=1e-6)
