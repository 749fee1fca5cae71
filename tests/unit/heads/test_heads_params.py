"""Parameter parsing and validation, kinds and their tasks, the validation fraction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heads import InvalidParams, available_kinds, train_head
from heads.kinds import DEFAULT_KIND, get_kind
from heads.params import ChoiceParam, FloatParam, IntParam, format_value, parse_params
from heads.targets import Task
from tests.unit.heads.synthetic import blobs, class_targets, regression_targets

SPECS = {
    "C": FloatParam("c", gt=0.0),  # tunable: no default
    "max_iter": IntParam("m", default=1000, ge=10, le=10000),
    "class_weight": ChoiceParam("w", default="none", choices=("none", "balanced")),
}


def test_defaults_and_tunables() -> None:
    assert parse_params(SPECS, {}) == {"C": None, "max_iter": 1000, "class_weight": "none"}


def test_parses_given_values() -> None:
    values = parse_params(SPECS, {"C": "0.5", "max_iter": " 20 ", "class_weight": "Balanced"})
    assert values == {"C": 0.5, "max_iter": 20, "class_weight": "balanced"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"gamma": "1"}, "params[gamma]"),  # unknown key
        ({"C": "abc"}, "params[C]"),  # malformed
        ({"C": ""}, "params[C]"),
        ({"C": "0"}, "params[C]"),  # out of range (> 0)
        ({"C": "-1"}, "params[C]"),
        ({"C": "nan"}, "params[C]"),
        ({"C": "inf"}, "params[C]"),
        ({"max_iter": "9"}, "params[max_iter]"),
        ({"max_iter": "10001"}, "params[max_iter]"),
        ({"max_iter": "100.5"}, "params[max_iter]"),
        ({"class_weight": "auto"}, "params[class_weight]"),
    ],
)
def test_bad_params_name_the_field(raw: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params(SPECS, raw)
    assert info.value.field == field


@pytest.mark.parametrize("value", [0.1, 1.0, 1e-7, 123.456, 1 / 3, np.float64(0.3)])
def test_format_value_round_trips(value: float) -> None:
    text = format_value(value)
    assert float(text) == value
    assert "np." not in text


def test_registry_lists_kinds() -> None:
    assert available_kinds() == ["knn", "linear_svm", "logistic_regression", "mlp", "ridge"]
    assert get_kind("ridge").tasks == {Task.REGRESSION}
    assert get_kind("knn").tasks == {Task.CLASSIFICATION, Task.MULTI_LABEL}
    assert set(get_kind("knn").params) == {"n_neighbors", "metric", "weights"}
    assert get_kind("mlp").tasks == set(Task)
    assert {"hidden", "dropout", "lr", "weight_decay", "epochs", "patience"} <= set(
        get_kind("mlp").params
    )
    assert get_kind("").name == DEFAULT_KIND == "logistic_regression"


def test_unknown_kind_lists_known_kinds() -> None:
    with pytest.raises(InvalidParams) as info:
        get_kind("random_forest")
    assert info.value.field == "kind"
    for name in available_kinds():
        assert name in info.value.message


@pytest.mark.parametrize(
    ("kind", "task"),
    [
        ("ridge", Task.CLASSIFICATION),
        ("ridge", Task.MULTI_LABEL),
        ("knn", Task.REGRESSION),
        ("linear_svm", Task.REGRESSION),
        ("logistic_regression", Task.REGRESSION),
    ],
)
def test_kind_task_mismatch(kind: str, task: Task) -> None:
    with pytest.raises(InvalidParams) as info:
        get_kind(kind, task)
    assert info.value.field == "kind"


SMALL_X, SMALL_Y = blobs(30, 3)


def test_train_head_reports_kind_task_mismatch() -> None:
    with pytest.raises(InvalidParams) as info:
        train_head("ridge", SMALL_X, class_targets(SMALL_Y))
    assert info.value.field == "kind"
    with pytest.raises(InvalidParams) as info:
        train_head("knn", SMALL_X, regression_targets(SMALL_Y))
    assert info.value.field == "kind"


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("logistic_regression", {"alpha": "1"}, "params[alpha]"),
        ("ridge", {"C": "1"}, "params[C]"),
        ("ridge", {"alpha": "-2"}, "params[alpha]"),
        ("knn", {"n_neighbors": "0"}, "params[n_neighbors]"),
        ("knn", {"n_neighbors": "101"}, "params[n_neighbors]"),
        ("knn", {"metric": "manhattan"}, "params[metric]"),
        ("knn", {"weights": "inverse"}, "params[weights]"),
        ("linear_svm", {"C": "x"}, "params[C]"),
        ("mlp", {"C": "1"}, "params[C]"),
        ("mlp", {"hidden": "7"}, "params[hidden]"),
        ("mlp", {"hidden": "4097"}, "params[hidden]"),
        ("mlp", {"dropout": "-0.1"}, "params[dropout]"),
        ("mlp", {"dropout": "0.95"}, "params[dropout]"),
        ("mlp", {"lr": "0"}, "params[lr]"),
        ("mlp", {"weight_decay": "-1e-4"}, "params[weight_decay]"),
        ("mlp", {"max_epochs": "0"}, "params[max_epochs]"),
        ("mlp", {"max_epochs": "2001"}, "params[max_epochs]"),
        ("mlp", {"epochs": "0"}, "params[epochs]"),
        ("mlp", {"epochs": "ten"}, "params[epochs]"),
        ("mlp", {"patience": "0"}, "params[patience]"),
        ("mlp", {"patience": "201"}, "params[patience]"),
        ("mlp", {"batch_size": "0"}, "params[batch_size]"),
        ("mlp", {"class_weight": "auto"}, "params[class_weight]"),
        ("mlp", {"seed": "-1"}, "params[seed]"),
    ],
)
def test_train_head_reports_bad_params(kind: str, params: dict[str, str], field: str) -> None:
    targets = regression_targets(SMALL_Y) if kind == "ridge" else class_targets(SMALL_Y)
    with pytest.raises(InvalidParams) as info:
        train_head(kind, SMALL_X, targets, params)
    assert info.value.field == field


def test_inclusive_float_bound_and_tunable_int() -> None:
    specs = {
        "rate": FloatParam("r", default=0.1, ge=0.0, le=0.9),
        "steps": IntParam("s", default=None, ge=1, le=10),
    }
    assert parse_params(specs, {}) == {"rate": 0.1, "steps": None}
    assert parse_params(specs, {"rate": "0", "steps": "10"}) == {"rate": 0.0, "steps": 10}
    with pytest.raises(InvalidParams, match=">= 0"):
        parse_params(specs, {"rate": "-0.01"})


@pytest.mark.parametrize("fraction", [-0.1, 0.91, 1.0, math.nan, math.inf, "0.2", True])
def test_validation_fraction_out_of_range(fraction: object) -> None:
    with pytest.raises(InvalidParams) as info:
        train_head("", SMALL_X, class_targets(SMALL_Y), validation_fraction=fraction)  # type: ignore[arg-type]
    assert info.value.field == "validation_fraction"


def test_given_params_are_kept_and_effective_params_retrain_identically() -> None:
    given = train_head("", SMALL_X, class_targets(SMALL_Y), {"C": "0.25", "max_iter": "50"})
    assert given.summary.params == {"C": "0.25", "max_iter": "50", "class_weight": "none"}
    tuned = train_head("linear_svm", SMALL_X, class_targets(SMALL_Y))
    again = train_head("linear_svm", SMALL_X, class_targets(SMALL_Y), tuned.summary.params)
    assert again.summary.params == tuned.summary.params
    assert again.summary.metrics == tuned.summary.metrics


def test_check_request_validates_without_embeddings() -> None:
    from heads import InvalidTrainingData, check_request

    assert check_request("", ["a", "b"]) == ("logistic_regression", Task.CLASSIFICATION)
    assert check_request("ridge", [1.0, 2.0], {"alpha": "2"}, 0.0) == ("ridge", Task.REGRESSION)
    assert check_request("knn", [["a"], ["b"]]) == ("knn", Task.MULTI_LABEL)
    for args, error, field in [
        (("nope", ["a", "b"]), InvalidParams, "kind"),
        (("knn", [1.0, 2.0]), InvalidParams, "kind"),
        (("", ["a", ""]), InvalidTrainingData, "examples[1].label"),
        (("", ["a", "b"], {"C": "0"}), InvalidParams, "params[C]"),
        (("", ["a", "b"], {}, 0.95), InvalidParams, "validation_fraction"),
    ]:
        with pytest.raises(error) as info:
            check_request(*args)
        assert info.value.field == field
