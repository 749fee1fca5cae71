"""The compute budget: up-front cost estimates and the default caps."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from heads import (
    DEFAULT_COST_CAPS,
    InvalidParams,
    TrainingStopped,
    check_cost,
    estimate_cost,
    train_head,
)

HOSTILE = {"epochs": "2000", "batch_size": "1", "hidden": "4096"}
KINDS = ("mlp", "logistic_regression", "linear_svm", "knn")


def labels(n: int, distinct: int) -> list[str]:
    return [f"label {i % distinct}" for i in range(n)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dim", [384, 1280])
@pytest.mark.parametrize("distinct", [2, 100, 3000])
def test_every_default_job_up_to_the_example_limit_passes(
    kind: str, dim: int, distinct: int
) -> None:
    check_cost(estimate_cost(kind, labels(20_000, distinct), {}, dim), DEFAULT_COST_CAPS)


@pytest.mark.parametrize("dim", [384, 1280])
def test_default_regression_and_multi_label_jobs_pass(dim: int) -> None:
    values = [float(i) for i in range(20_000)]
    for kind in ("ridge", "mlp"):
        check_cost(estimate_cost(kind, values, {}, dim), DEFAULT_COST_CAPS)
    multi = [[f"a{i % 3000}", f"b{i % 7}"] for i in range(20_000)]
    for kind in KINDS:
        check_cost(estimate_cost(kind, multi, {}, dim), DEFAULT_COST_CAPS)


@pytest.mark.parametrize("n", [100, 300, 20_000])
def test_the_hostile_mlp_is_refused_naming_its_params_with_estimate_and_cap(n: int) -> None:
    estimate = estimate_cost("mlp", labels(n, 2), HOSTILE, 384)
    with pytest.raises(InvalidParams) as refused:
        check_cost(estimate, DEFAULT_COST_CAPS)
    error = refused.value
    assert error.field == "params[epochs], params[batch_size], params[hidden]"
    assert f"{estimate.operations:.3g}" in error.message
    assert f"{DEFAULT_COST_CAPS['mlp']:.3g}" in error.message


def test_costs_grow_with_examples_epochs_and_width_and_small_batches() -> None:
    def mlp(n: int = 1000, **params: str) -> float:
        return estimate_cost("mlp", labels(n, 5), params, 384).operations

    assert mlp(2000) == pytest.approx(2 * mlp(1000), rel=0.05)
    assert mlp(epochs="100") == pytest.approx(2 * mlp(epochs="50"), rel=0.05)
    assert mlp(hidden="1024") > 3.5 * mlp(hidden="256")
    assert mlp(batch_size="1") > 10 * mlp(batch_size="256")
    # Unset epochs are bounded by max_epochs (search, fresh run and refit).
    assert mlp() > mlp(epochs="200")
    knn = [estimate_cost("knn", labels(n, 5), {}, 384).operations for n in (1000, 2000)]
    assert knn[1] == pytest.approx(4 * knn[0], rel=0.01)  # all pairs: examples squared
    logistic = [
        estimate_cost("logistic_regression", labels(1000, 5), p, 384).operations
        for p in ({}, {"C": "1"}, {"C": "1", "max_iter": "10000"})
    ]
    assert logistic[0] > 5 * logistic[1]  # the C search over folds
    assert logistic[2] == pytest.approx(10 * logistic[1])


def test_default_params_name_examples_as_the_field_to_lower() -> None:
    estimate = estimate_cost("knn", labels(20_000, 2), {}, 384)
    with pytest.raises(InvalidParams) as refused:
        check_cost(estimate, {"knn": estimate.operations / 2})
    assert refused.value.field == "examples"


def test_a_stop_request_ends_mlp_training_at_its_next_checkpoint() -> None:
    import heads.kinds.mlp_train  # noqa: F401 - torch's first import (seconds) is not a checkpoint

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 384)).astype(np.float32)
    stop = threading.Event()
    fitting = threading.Event()
    checkpoints_in_fit = threading.Semaphore(0)
    after_stop: list[int] = []  # checkpoints polled once stop was set

    def progress(stage: str, fraction: float) -> None:
        if stage == "fit":
            fitting.set()

    def should_stop() -> bool:
        if stop.is_set():
            after_stop.append(1)
        elif fitting.is_set():
            checkpoints_in_fit.release()
        return stop.is_set()

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            train_head("mlp", x, labels(400, 2), HOSTILE, 0.2, progress, should_stop)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    for _ in range(3):  # inside the epochs: the fit loop has polled its checkpoint 3 times
        assert checkpoints_in_fit.acquire(timeout=60)
    stop.set()
    thread.join(60)  # HOSTILE trains for hours: ending at all means it was interrupted
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], TrainingStopped)
    assert len(after_stop) == 1  # the very next checkpoint stopped it
