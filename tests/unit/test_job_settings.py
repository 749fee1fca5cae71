"""Training settings: per-kind cost caps merge with the defaults; label limits name the label."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from heads import DEFAULT_COST_CAPS
from service.config import Settings
from service.errors import InvalidArgument
from service.jobs.validation import TrainingLimits, check_labels


def test_cost_caps_given_for_some_kinds_keep_the_defaults_of_the_others() -> None:
    caps = Settings(job_cost_caps={"mlp": 1e14}).job_cost_caps
    assert caps == {**DEFAULT_COST_CAPS, "mlp": 1e14}


@pytest.mark.parametrize("caps", [{"mlpp": 1e14}, {"mlp": 0}, {"knn": -1}])
def test_unknown_kinds_and_non_positive_caps_stop_the_server(caps: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(job_cost_caps=caps)


LIMITS = TrainingLimits(max_label_bytes=8, max_labels_per_head=3)


@pytest.mark.parametrize(
    ("targets", "field", "message"),
    [
        (["a", "b", "ééééé"], "examples[2].label", "label is 10 bytes; the limit is 8"),
        (["a", "x" * 9], "examples[1].label", "label is longer than 8 bytes"),
        ([["a"], ["b", ""]], "examples[1].labels[1]", "label must not be empty"),
        (["a", "b\ud800"], "examples[1].label", "label is not valid UTF-8"),
        (["a", "b", "a", "c", "d"], "examples[4].label", "at most 3 distinct labels"),
        ([["a", "b"], ["c", "a", "d"]], "examples[1].labels[2]", "at most 3 distinct labels"),
    ],
)
def test_label_limits_name_the_label(targets: list, field: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_labels(targets, LIMITS)
    assert refused.value.field == field and message in str(refused.value)


def test_labels_within_the_limits_and_regression_values_pass() -> None:
    check_labels(["a", "b", "c", "a", "12345678"[:8]], TrainingLimits(max_label_bytes=8))
    check_labels([1.0, 2.0, 3.0, 4.0], LIMITS)
