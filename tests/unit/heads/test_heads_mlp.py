"""The torch ``mlp`` kind: learning, ONNX fidelity, determinism, early stopping, class weights."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from heads import HeadVerificationError, LoadedHead, Task, TrainedHead, train_head
from heads.kinds import get_kind
from heads.kinds.mlp import HOLDOUT_FRACTION, HOLDOUT_SEED, MlpSettings, build_problem
from heads.onnx_export import verify_onnx
from heads.params import parse_params
from heads.split import split_indices
from heads.targets import encode_targets
from tests.unit.heads.synthetic import blobs, class_targets, multi_label_targets, regression_targets

REPO = Path(__file__).resolve().parents[3]
TARGETS = {
    Task.CLASSIFICATION: class_targets,
    Task.MULTI_LABEL: multi_label_targets,
    Task.REGRESSION: regression_targets,
}


def _load(head: TrainedHead) -> LoadedHead:
    card = head.to_card(tenant="t", name="h", version=1, backbone="b", backbone_fingerprint="f")
    return LoadedHead.from_bytes(card, head.onnx_bytes)


def _fit(task: Task, params: dict[str, str] | None = None, seed: int = 0):
    x, y = blobs(120, 4, noise=2.0, seed=seed)  # overlapping: probabilities not saturated
    targets = encode_targets(TARGETS[task](y))
    kind = get_kind("mlp", task)
    return kind.fit(x, targets, parse_params(kind.params, params or {})), x


@pytest.mark.parametrize("task", list(Task))
def test_onnx_reproduces_torch_off_the_training_data(task: Task) -> None:
    fit, x = _fit(task)
    onnx_bytes = fit.model.to_onnx(x.shape[1]).SerializeToString()
    far, _ = blobs(200, 4, noise=3.0, seed=77)  # other points, far wider spread than training
    for inputs in (x, far, far * 5):
        verify_onnx(fit.model, onnx_bytes, inputs, task)  # within 1e-4, same labels


@pytest.mark.parametrize("task", list(Task))
def test_verification_rejects_a_slightly_altered_graph(task: Task) -> None:
    fit, x = _fit(task)
    graph = fit.model.to_onnx(x.shape[1])
    # Nudge one output bias (regression: the folded target mean) by 0.1: a small change, yet
    # enough to move even the confident training points' probabilities by more than 1e-4.
    name = "y_mean" if task is Task.REGRESSION else "b2"
    tensor = next(t for t in graph.graph.initializer if t.name == name)
    values = numpy_helper.to_array(tensor).copy()
    values.reshape(-1)[0] += 0.1
    tensor.CopyFrom(numpy_helper.from_array(values, name))
    with pytest.raises(HeadVerificationError, match="differs"):
        verify_onnx(fit.model, graph.SerializeToString(), x, task)


def test_training_is_deterministic_and_seeded() -> None:
    x, y = blobs(150, 3, noise=1.0, seed=3)
    targets = class_targets(y)
    first = train_head("mlp", x, targets)
    second = train_head("mlp", x, targets)
    assert first.onnx_bytes == second.onnx_bytes
    assert (
        first.summary.metrics == second.summary.metrics
        and first.summary.params == second.summary.params
    )
    fresh, _ = blobs(50, 3, noise=1.0, seed=4)
    a = np.array([p.scores for p in _load(first).predict(fresh, top_k=0)], dtype=object)
    b = np.array([p.scores for p in _load(second).predict(fresh, top_k=0)], dtype=object)
    assert (a == b).all()
    other = train_head("mlp", x, targets, {"seed": "1"})
    assert other.onnx_bytes != first.onnx_bytes


def test_concurrent_trainings_do_not_disturb_each_other() -> None:
    """Every random draw comes from the run's own generator, not torch's global one."""
    x, y = blobs(150, 3, noise=1.0, seed=5)
    alone = train_head("mlp", x, class_targets(y)).onnx_bytes
    results: list[bytes] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(train_head("mlp", x, class_targets(y)).onnx_bytes)
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [alone] * 3


def test_recorded_params_retrain_the_same_head() -> None:
    x, y = blobs(120, 3, noise=1.0, seed=6)
    head = train_head("mlp", x, class_targets(y))
    assert 1 <= int(head.summary.params["epochs"]) <= int(head.summary.params["max_epochs"])
    again = train_head("mlp", x, class_targets(y), head.summary.params)
    assert again.onnx_bytes == head.onnx_bytes and again.summary.metrics == head.summary.metrics


def test_early_stopping_stops_well_before_max_epochs_on_easy_data() -> None:
    from heads.kinds.mlp_train import search_epochs, single_threaded_torch

    x, y = blobs(200, 4, seed=7)  # easily separable
    targets = encode_targets(class_targets(y))
    settings = MlpSettings(64, 0.1, 3e-3, 1e-4, 256, 0, max_epochs=500, patience=5)
    _, holdout = split_indices(targets, HOLDOUT_FRACTION, HOLDOUT_SEED)
    with single_threaded_torch():
        search = search_epochs(build_problem(x, targets, "balanced"), settings, holdout)
    assert search.epochs_run == search.best_epoch + settings.patience
    assert search.epochs_run < 100
    head = train_head("mlp", x, class_targets(y), {"max_epochs": "500", "patience": "5"})
    assert int(head.summary.params["epochs"]) < 100
    given = train_head("mlp", x, class_targets(y), {"epochs": "3"})
    assert given.summary.params["epochs"] == "3"


def test_tiny_classes_without_a_holdout_still_train() -> None:
    x, y = blobs(6, 3, seed=8)  # two per class: the hold-out cannot take one from any class
    head = train_head("mlp", x, class_targets(y), validation_fraction=0.0)
    assert [p.label for p in _load(head).predict(x)] == class_targets(y)


def _imbalanced(n_major: int, n_minor: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Two overlapping Gaussians, the minority shifted along one axis."""
    rng = np.random.default_rng(seed)
    shift = np.zeros(384)
    shift[0] = 2.0
    x = np.concatenate([rng.normal(size=(n_major, 384)), rng.normal(size=(n_minor, 384)) + shift])
    return x.astype(np.float32), ["major"] * n_major + ["minor"] * n_minor


def test_balanced_class_weights_raise_minority_recall() -> None:
    x, labels = _imbalanced(360, 40, seed=1)
    x_test, truth = _imbalanced(0, 1000, seed=2)
    recall = {}
    for class_weight in ("balanced", "none"):
        head = train_head("mlp", x, labels, {"class_weight": class_weight})
        assert head.summary.params["class_weight"] == class_weight
        predicted = [p.label for p in _load(head).predict(x_test)]
        recall[class_weight] = np.mean([p == t for p, t in zip(predicted, truth, strict=True)])
    assert recall["balanced"] > recall["none"] + 0.1, recall


def test_multi_label_positive_weights_raise_rare_label_recall() -> None:
    x, labels = _imbalanced(360, 40, seed=3)
    targets = [["common", "rare"] if t == "minor" else ["common"] for t in labels]
    x_test, _ = _imbalanced(0, 1000, seed=4)
    recall = {}
    for class_weight in ("balanced", "none"):
        head = train_head("mlp", x, targets, {"class_weight": class_weight})
        recall[class_weight] = np.mean(["rare" in p.labels for p in _load(head).predict(x_test)])
    # A hard problem (one informative axis in 384): recall is low either way, but triples here.
    assert recall["balanced"] > 2 * recall["none"] + 0.02, recall


def test_thousand_examples_ten_classes_train_in_seconds() -> None:
    """Measured at about 1 s here (torch already imported); 20 s is a loud alarm."""
    x, y = blobs(1000, 10, noise=0.6, seed=13)
    train_head("mlp", x[:20], class_targets(y[:20]))  # imports torch outside the timing
    start = time.perf_counter()
    head = train_head("mlp", x, class_targets(y))
    assert time.perf_counter() - start < 20.0
    assert head.summary.metrics["accuracy"] >= 0.9


def test_torch_threads_restored_after_overlapping_trainings() -> None:
    import torch

    from heads.kinds.mlp_train import single_threaded_torch

    before = torch.get_num_threads()
    with single_threaded_torch():
        with single_threaded_torch():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_import_heads_does_not_import_torch() -> None:
    code = "import heads, sys; assert 'mlp' in heads.available_kinds(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


_WITHOUT_TORCH = """
import sys
import numpy as np
import heads
from heads.kinds import get_kind
assert "torch" not in sys.modules and "mlp" not in heads.available_kinds()
try:
    get_kind("mlp")
except heads.InvalidParams as exc:
    assert exc.field == "kind" and "torch" in exc.message, exc
else:
    raise AssertionError("mlp was found without torch")
card = heads.HeadCard.from_json(open(sys.argv[1]).read())
head = heads.LoadedHead.from_bytes(card, open(sys.argv[2], "rb").read())
x = np.load(sys.argv[3])
print(",".join(p.label for p in head.predict(x)))
"""


def test_without_torch_mlp_is_not_listed_and_its_heads_still_serve(tmp_path: Path) -> None:
    """A gateway without torch: site-packages minus torch, seen through a farm of symlinks."""
    import site

    x, y = blobs(60, 3, seed=9)
    head = train_head("mlp", x, class_targets(y))
    card = head.to_card(tenant="t", name="h", version=1, backbone="b", backbone_fingerprint="f")
    (tmp_path / "card.json").write_text(card.to_json())
    (tmp_path / "head.onnx").write_bytes(head.onnx_bytes)
    np.save(tmp_path / "x.npy", x[:10])
    farm = tmp_path / "site"
    farm.mkdir()
    for entry in Path(site.getsitepackages()[0]).iterdir():
        if not entry.name.startswith(("torch", "functorch")):
            (farm / entry.name).symlink_to(entry)
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            _WITHOUT_TORCH,
            *(str(tmp_path / f) for f in ("card.json", "head.onnx", "x.npy")),
        ],  # fmt: skip
        cwd=REPO,
        env={"PYTHONPATH": f"{REPO}:{farm}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(",") == [p.label for p in _load(head).predict(x[:10])]
