"""TrainHead validation, done at once so a bad request never becomes a job."""

from __future__ import annotations

from heads import HeadError, InvalidParams, InvalidTrainingData
from heads.training import check_request
from service.backbones.embedder import Embedder
from service.backbones.inputs import Input
from service.errors import InvalidArgument
from service.jobs.model import Target, TrainingRequest
from service.store.registry import check_head_name


class MissingTarget:
    """An example with no target set (kept so the error names its index)."""


class ConflictingTargets:
    """An example with more than one kind of target set."""


def validate_training_request(
    embedder: Embedder,
    head: str,
    backbone: str,
    kind: str,
    inputs: list[Input],
    targets: list[Target | MissingTarget | ConflictingTargets],
    params: dict[str, str],
    validation_fraction: float,
    max_examples: int,
) -> TrainingRequest:
    """Checks everything that can be checked before embedding: names, limits, inputs, targets,
    kind and params. Raises InvalidArgument naming the field (and index)."""
    check_head_name(head)
    served = embedder.get(backbone)
    if not inputs:
        raise InvalidArgument("examples", "at least one example is required")
    if len(inputs) > max_examples:
        raise InvalidArgument(
            "examples", f"{len(inputs)} examples exceed the limit of {max_examples} per job"
        )
    for index, target in enumerate(targets):
        if isinstance(target, MissingTarget):
            raise InvalidArgument(f"examples[{index}]", "one of label, labels or value is required")
        if isinstance(target, ConflictingTargets):
            raise InvalidArgument(f"examples[{index}]", "set only one of label, labels or value")
    _check_inputs(embedder, served.card.name, inputs)
    try:
        resolved_kind, _task = check_request(kind, targets, params, validation_fraction)
    except (InvalidTrainingData, InvalidParams) as error:
        raise InvalidArgument(error.field, error.message) from None
    except HeadError as error:  # any other refusal of the request by heads is still bad input
        raise InvalidArgument("examples", str(error)) from None
    return TrainingRequest(
        head=head,
        backbone=served.card.name,
        kind=resolved_kind,
        inputs=inputs,
        targets=list(targets),  # type: ignore[arg-type] - markers were refused above
        params=dict(params),
        validation_fraction=validation_fraction,
    )


def _check_inputs(embedder: Embedder, backbone: str, inputs: list[Input]) -> None:
    """Every example input must suit the backbone, named as in the request: `examples[i].input`."""
    served = embedder.get(backbone)
    for index, item in enumerate(inputs):
        embedder.check_input(served, item, f"examples[{index}].input")
