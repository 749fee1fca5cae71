"""A training job's compute budget, estimated before anything is embedded.

Each kind estimates what one `heads.training.train_head` run costs it, in *operations*: roughly
multiply-adds on one core, with fixed per-step overheads converted into the same unit (measured:
one core here does about 1.5e10 of them a second in torch or BLAS). The estimate covers the
whole run: the fit on the training part (with its own tuning or early-stopping search) and the
refit on every example, with iteration and epoch counts at their limits where the caller can
raise them. It is an upper bound for the shapes that matter (few examples, wide layers, many
epochs), not a prediction: the wall-clock timeout catches what it misses.

Caps are per kind because the kinds' units differ in what they cost in practice; the service
makes them settings. The defaults let every default-parameter job of up to 20,000 examples with
up to 3,000 labels on a 1,280-d backbone pass, and refuse the known-hostile
``mlp`` (``epochs=2000, batch_size=1, hidden=4096``) from about 70 examples on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from heads.errors import InvalidParams
from heads.kind_choice import AUTO_KIND, FOLDS, REPEATS, REPEATS_BELOW
from heads.kinds import DEFAULT_KIND, candidate_kinds, get_kind
from heads.params import parse_params
from heads.shape import ProblemShape
from heads.split import DEFAULT_VALIDATION_FRACTION
from heads.targets import EncodedTargets, Task, encode_targets

#: Operations one training run of each kind may be estimated at (about an hour of one core for
#: mlp; the sklearn kinds' cruder models get more headroom).
DEFAULT_COST_CAPS: dict[str, float] = {
    "mlp": 5e13,
    "logistic_regression": 5e14,
    "linear_svm": 5e14,
    "knn": 1e13,
    "ridge": 1e13,
}
#: Cap of a kind registered without one above.
FALLBACK_COST_CAP = 1e13


def fits_per_candidate(examples: int) -> int:
    """Fits of one candidate of kind or backbone "auto", at most: one per fold of every shuffle
    (`heads.kind_choice.folds`), the tuning fit, and the head's own fit."""
    return FOLDS * (REPEATS if examples < REPEATS_BELOW else 1) + 2


@dataclass(frozen=True)
class CostEstimate:
    """A training run's estimated cost.

    Attributes:
        kind: The resolved kind.
        operations: Estimated operations (see the module doc).
        fields: The request fields that drive it: the cost parameters the caller set (e.g.
            ``params[epochs]``), else ``examples``.
    """

    kind: str
    operations: float
    fields: tuple[str, ...]
    #: Kind "auto": each candidate's share (the choice's fits included), each held to its own cap.
    parts: tuple[CostEstimate, ...] = ()
    #: What this part is a candidate of ("kind" or "backbone" "auto"), for the refusal's advice.
    candidate_of: str = ""


def estimate_cost(
    kind: str,
    targets: Sequence[object],
    params: Mapping[str, str] | None,
    dim: int,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    probe_dims: Sequence[int] = (),
) -> CostEstimate:
    """Estimates what training this request would cost (targets are encoded, nothing is fitted).

    Args:
        kind: Head kind name; "" means the default.
        targets: One target per example, as for `heads.train_head`.
        params: The caller's hyper-parameters as strings.
        dim: Embedding width of the backbone.
        validation_fraction: Share held out for metrics.
        probe_dims: Backbone "auto": the width of each candidate backbone, whose probe
            (`heads.backbone_choice`) is counted as a part of its own; `dim` is then the
            widest.

    Raises:
        InvalidTrainingData, InvalidParams: As `heads.check_request` would.
    """
    encoded = encode_targets(targets)
    main = _estimate(kind, encoded, params, dim, validation_fraction)
    if not probe_dims:
        return main
    probe = get_kind("ridge" if encoded.task is Task.REGRESSION else DEFAULT_KIND, encoded.task)
    probes = tuple(
        CostEstimate(
            probe.name,
            probe.cost(_shape(encoded, width, validation_fraction), parse_params(probe.params, {}))
            * fits_per_candidate(len(encoded)),
            ("examples",),
            candidate_of="backbone",
        )
        for width in probe_dims
    )
    parts = (*(main.parts or (main,)), *probes)
    return CostEstimate(main.kind, sum(p.operations for p in parts), main.fields, parts)


def _shape(encoded: EncodedTargets, dim: int, validation_fraction: float) -> ProblemShape:
    n_labels = 0 if encoded.task is Task.REGRESSION else len(encoded.labels)
    return ProblemShape(len(encoded), dim, encoded.task, n_labels, validation_fraction)


def _estimate(
    kind: str,
    encoded: EncodedTargets,
    params: Mapping[str, str] | None,
    dim: int,
    validation_fraction: float,
) -> CostEstimate:
    """One kind's estimate (kind "auto": every candidate's)."""
    if kind == AUTO_KIND:
        return _estimate_auto(encoded, dim, validation_fraction)
    head_kind = get_kind(kind, encoded.task)
    given = dict(params or {})
    parsed = parse_params(head_kind.params, given)
    shape = _shape(encoded, dim, validation_fraction)
    fields = tuple(f"params[{name}]" for name in head_kind.cost_params if name in given)
    return CostEstimate(head_kind.name, head_kind.cost(shape, parsed), fields or ("examples",))


def _estimate_auto(
    encoded: EncodedTargets, dim: int, validation_fraction: float
) -> CostEstimate:
    """Kind "auto": every candidate is fitted once on the training part and once per fold
    (`heads.kind_choice`), and the chosen one is then trained as usual (its own estimate)."""
    shape = _shape(encoded, dim, validation_fraction)
    parts = tuple(
        CostEstimate(
            kind.name,
            kind.cost(shape, parse_params(kind.params, {})) * fits_per_candidate(len(encoded)),
            ("examples",),
            candidate_of="kind",
        )
        for kind in candidate_kinds(encoded.task)
    )
    return CostEstimate(AUTO_KIND, sum(p.operations for p in parts), ("examples",), parts)


def check_cost(estimate: CostEstimate, caps: Mapping[str, float]) -> None:
    """Refuses a run whose estimate is over its kind's cap: it could never run as given.

    Kind "auto" is refused when any candidate is over its own cap, naming the candidate.

    Raises:
        InvalidParams: On the fields that drive the cost, stating the estimate and the cap.
    """
    for part in estimate.parts:
        check_cost(part, caps)
    if estimate.parts:
        return
    cap = caps.get(estimate.kind, FALLBACK_COST_CAP)
    if estimate.operations <= cap:
        return
    lower = " or ".join(estimate.fields)
    role = f" (a candidate of {estimate.candidate_of} \"auto\")" if estimate.candidate_of else ""
    advice = f", or name a {estimate.candidate_of}" if estimate.candidate_of else ""
    raise InvalidParams(
        ", ".join(estimate.fields),
        f"estimated training cost of {estimate.operations:.3g} operations (examples x epochs x "
        f"model size) exceeds this server's cap of {cap:.3g} for kind {estimate.kind!r}{role}; "
        f"lower {lower}" + ("" if lower == "examples" else ", or train on fewer examples")
        + advice,
    )
