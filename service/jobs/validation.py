"""TrainHead validation, done at once so a bad request never becomes a job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from heads import (
    AUTO_BACKBONE,
    DEFAULT_COST_CAPS,
    HeadError,
    InvalidParams,
    InvalidTrainingData,
    check_cost,
    estimate_cost,
)
from heads.fusion import fused_name, weight_grid
from heads.training import check_request
from service.backbones.embedder import Embedder, ServedBackbone
from service.backbones.fused import fused_parts, is_fused
from service.backbones.inputs import Input
from service.errors import InvalidArgument
from service.jobs.model import Target, TrainingRequest
from service.store.registry import check_head_name


@dataclass(frozen=True)
class TrainingLimits:
    """What one TrainHead request may ask for: each limit has its setting's name (see
    `service.config.Settings`), and the defaults are the settings'."""

    max_examples_per_job: int = 20_000
    max_label_bytes: int = 256
    max_labels_per_head: int = 10_000
    cost_caps: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_COST_CAPS))


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
    limits: TrainingLimits,
) -> TrainingRequest:
    """Checks everything that can be checked before embedding: names, limits, inputs, targets,
    kind, params, labels and the compute budget. Raises InvalidArgument naming the field.

    CPU work over every example: call it off the event loop (the TrainHead servicer does).
    """
    check_head_name(head)
    # An unknown backbone (or part) is named before anything else; "auto" is resolved with the
    # inputs.
    named = _named_backbones(embedder, backbone)
    if not inputs:
        raise InvalidArgument("examples", "at least one example is required")
    if len(inputs) > limits.max_examples_per_job:
        raise InvalidArgument(
            "examples",
            f"{len(inputs)} examples exceed the limit of {limits.max_examples_per_job} per job",
        )
    checked: list[Target] = []
    for index, target in enumerate(targets):
        if isinstance(target, MissingTarget):
            raise InvalidArgument(f"examples[{index}]", "one of label, labels or value is required")
        if isinstance(target, ConflictingTargets):
            raise InvalidArgument(f"examples[{index}]", "set only one of label, labels or value")
        checked.append(target)
    check_labels(checked, limits)
    # Backbone "auto": every served backbone of the inputs' modality embeds them all; a fused
    # backbone: every part.
    candidates = embedder.candidates_for(inputs) if named is None else named
    if len(candidates) > 1 and len(inputs) * len(candidates) > limits.max_examples_per_job:
        # Each candidate embeds every example: the job's embedding work is their product.
        raise InvalidArgument(
            "examples",
            f"{len(inputs)} examples for backbone {backbone!r} are embedded by {len(candidates)} "
            f"backbones: {len(inputs) * len(candidates)} embeddings exceed the limit of "
            f"{limits.max_examples_per_job} per job; name one backbone, or send at most "
            f"{limits.max_examples_per_job // len(candidates)} examples",
        )
    for candidate in candidates:
        _check_inputs(embedder, candidate.card.name, inputs)
    try:
        resolved_kind, _task = check_request(kind, checked, params, validation_fraction)
    except (InvalidTrainingData, InvalidParams) as error:
        raise InvalidArgument(error.field, error.message) from None
    except HeadError as error:  # any other refusal of the request by heads is still bad input
        raise InvalidArgument("examples", str(error)) from None
    widths = [candidate.card.dim for candidate in candidates]
    # The probes that choose: one per candidate of "auto", one per weighting of a fusion (of
    # the parts, or of every candidate of "auto") on the joined width.
    fusion_probes = [sum(widths)] * len(weight_grid(len(widths))) if len(widths) > 1 else []
    request = TrainingRequest(
        head=head,
        backbone=AUTO_BACKBONE if named is None else fused_name([c.card.name for c in named]),
        kind=resolved_kind,
        inputs=inputs,
        targets=checked,
        params=dict(params),
        validation_fraction=validation_fraction,
        # The widest the head can be: a fusion's joined width.
        embedding_dim=sum(widths) if len(widths) > 1 else widths[0],
    )
    probes = (widths if named is None else []) + fusion_probes
    check_cost_limit(request, limits, probes)
    return request


def _named_backbones(embedder: Embedder, backbone: str) -> list[ServedBackbone] | None:
    """The backbone a request names, a fused backbone's parts, or None for "auto"."""
    if backbone == AUTO_BACKBONE:
        return None
    if is_fused(backbone):
        return fused_parts(embedder, backbone)
    return [embedder.get(backbone)]


def check_labels(targets: Sequence[Target], limits: TrainingLimits) -> None:
    """Each label is non-empty UTF-8 of at most `max_label_bytes`; a head has at most
    `max_labels_per_head` distinct labels (every Predict reply may carry them all)."""
    seen: set[str] = set()
    for index, target in enumerate(targets):
        if isinstance(target, str):
            named = [(f"examples[{index}].label", target)]
        elif isinstance(target, list):
            named = [(f"examples[{index}].labels[{j}]", label) for j, label in enumerate(target)]
        else:
            continue
        for where, label in named:
            _check_label(where, label, limits.max_label_bytes)
            if label not in seen:
                seen.add(label)
                if len(seen) > limits.max_labels_per_head:
                    raise InvalidArgument(
                        where,
                        f"a head may have at most {limits.max_labels_per_head} distinct labels",
                    )


def _check_label(where: str, label: str, max_bytes: int) -> None:
    if not label:
        raise InvalidArgument(where, "label must not be empty")
    if len(label) > max_bytes:  # at least one byte a character: too long without encoding it
        raise InvalidArgument(where, f"label is longer than {max_bytes} bytes")
    try:
        size = len(label.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(where, "label is not valid UTF-8") from None
    if size > max_bytes:
        raise InvalidArgument(where, f"label is {size} bytes; the limit is {max_bytes}")


def check_cost_limit(
    request: TrainingRequest, limits: TrainingLimits, probe_dims: Sequence[int] = ()
) -> None:
    """Refuses a request whose estimated compute is over its kind's cap: it could never run.
    Backbone "auto" counts a probe on each candidate (`probe_dims`: their widths) besides the
    head itself on the widest."""
    try:
        check_cost(
            estimate_cost(
                request.kind, request.targets, request.params, request.embedding_dim,
                request.validation_fraction, probe_dims,
            ),
            limits.cost_caps,
        )  # fmt: skip
    except (InvalidTrainingData, InvalidParams) as error:
        raise InvalidArgument(error.field, error.message) from None


def _check_inputs(embedder: Embedder, backbone: str, inputs: list[Input]) -> None:
    """Every example input must suit the backbone, named as in the request: `examples[i].input`."""
    served = embedder.get(backbone)
    for index, item in enumerate(inputs):
        embedder.check_input(served, item, f"examples[{index}].input")
