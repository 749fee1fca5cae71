"""Training one head: validate, split, fit, evaluate, refit, export, verify.

Decisions:

* Metrics are measured on the validation part by a model fitted on the training part only.
* The *published* model is then refitted on all examples (training + validation) with the
  effective parameters of the first fit (tuned values are not re-tuned), because a head is
  usually trained on few examples and holding 20% back from it costs more than the refit risks.
  The reported metrics are therefore a slightly conservative estimate for the published head.
* The ONNX export of the published model is verified on the validation inputs (the training
  inputs when the validation part is empty); nothing is returned unless it matches.
* BLAS runs single-threaded while training (see `heads.threads`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from heads.backbone_choice import BackboneScore, choose_backbone, weight_probe_scores
from heads.card import HeadCard, TrainingSummary, data_hash, iso_utc, utc_now
from heads.errors import InvalidParams, InvalidTrainingData
from heads.fusion import Fused, FusedPart, choose_weights, describe_parts, fuse
from heads.kind_choice import AUTO_KIND, KindScore, choose_kind, folds
from heads.kinds import HeadKind, get_kind
from heads.metrics import confusion_matrix, evaluate
from heads.onnx_export import export_verified
from heads.params import ParamValue, format_value, parse_params
from heads.split import DEFAULT_VALIDATION_FRACTION, check_validation_fraction, split_indices
from heads.stopping import StopCheck, checkpoint, stop_checks
from heads.targets import EncodedTargets, Task, encode_targets
from heads.threads import single_threaded_blas
from heads.transfer import RawInputs, compare_with_baseline

#: Progress callback: (stage, fraction of the head's training done, 0..1). Stages, in order:
#: ``split``, ``choosing backbone`` (backbone "auto"), ``choosing weights`` (a fused backbone),
#: ``choosing kind`` (kind "auto"), ``fit``,
#: ``evaluate``, ``baseline`` (given raw inputs), ``refit``, ``export``, ``done``. An exception it
#: raises (e.g. the job was cancelled) aborts training and propagates.
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class TrainedHead:
    """A trained, verified head, not yet published.

    Attributes:
        summary: What training decided (kind, task, labels, metrics, params, ...): the part of
            the head's card that `train_head` knows.
        onnx_bytes: The verified ONNX graph of the published model.
    """

    summary: TrainingSummary
    onnx_bytes: bytes = field(repr=False)

    def to_card(
        self,
        *,
        tenant: str,
        name: str,
        version: int,
        backbone: str,
        backbone_fingerprint: str,
        created_at: str | None = None,
    ) -> HeadCard:
        """Builds the card to publish with `onnx_bytes`, from what the service knows.

        Args:
            tenant: Owner.
            name: Head name.
            version: Version being published (>= 1).
            backbone: Backbone the embeddings came from.
            backbone_fingerprint: Its fingerprint.
            created_at: ISO-8601 UTC time; now if omitted.
        """
        return HeadCard(
            **dict(self.summary),
            tenant=tenant,
            name=name,
            version=version,
            backbone=backbone,
            backbone_fingerprint=backbone_fingerprint,
            created_at=created_at or iso_utc(utc_now()),
        )


def _check_embeddings(embeddings: np.ndarray, n_targets: int) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InvalidTrainingData(
            "examples", f"embeddings must be (n, d) with d >= 1, got {x.shape}"
        )
    if x.shape[0] != n_targets:
        raise InvalidTrainingData(
            "examples", f"{x.shape[0]} embeddings for {n_targets} targets; need one per example"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise InvalidTrainingData("examples", f"embeddings must be numbers, got {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise InvalidTrainingData(f"examples[{bad[0]}].input", "embedding has NaN or infinity")
    return x


def _resolve(
    kind: str, targets: Sequence[object], params: Mapping[str, str] | None
) -> tuple[HeadKind | None, EncodedTargets, dict[str, ParamValue]]:
    """The kind (None for "auto": chosen after the split), the targets and the parameters."""
    if kind != AUTO_KIND:
        get_kind(kind)  # an unknown kind is reported before anything about the examples
    encoded = encode_targets(targets)
    if params is not None and not isinstance(params, Mapping):
        raise InvalidParams("params", "must be a map of strings to strings")
    if kind == AUTO_KIND:
        if params:
            raise InvalidParams(
                "params",
                'parameters belong to one kind; with kind "auto" leave them out (each '
                "candidate is tuned as it would be alone)",
            )
        return None, encoded, {}
    head_kind = get_kind(kind, encoded.task)
    return head_kind, encoded, parse_params(head_kind.params, params or {})


def check_request(
    kind: str,
    targets: Sequence[object],
    params: Mapping[str, str] | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
) -> tuple[str, Task]:
    """Validates a training request before anything is embedded, as `train_head` would.

    Lets the service refuse a bad request at once instead of failing the job after embedding.
    `train_head` repeats these checks, so calling this first is optional.

    Args:
        kind: Head kind name; "" means the default.
        targets: One target per example (see `train_head`).
        params: Hyper-parameters as strings.
        validation_fraction: Share held out for metrics.

    Returns:
        The resolved kind name (never empty) and the inferred task.

    Raises:
        InvalidTrainingData: Bad targets (``.field`` names the example).
        InvalidParams: Unknown kind, kind/task mismatch, bad parameter or validation fraction.
    """
    check_validation_fraction(validation_fraction)
    head_kind, encoded, _ = _resolve(kind, targets, params)
    return (AUTO_KIND if head_kind is None else head_kind.name), encoded.task


def train_head(
    kind: str,
    embeddings: np.ndarray | Mapping[str, np.ndarray] | Fused,
    targets: Sequence[object],
    params: Mapping[str, str] | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    raw: RawInputs | None = None,
    fuse_candidates: bool = False,
) -> TrainedHead:
    """Trains, evaluates, exports and verifies one head.

    CPU-bound (up to a few seconds for a thousand examples); the service runs it in an executor.

    Args:
        kind: Head kind name; "" means the default (``logistic_regression``); ``auto`` chooses
            among the kinds that do the task by cross-validation on the training part
            (`heads.kind_choice`), and the summary records every candidate's score.
        embeddings: (n, d) embeddings of the examples, any real dtype (used as float32); or,
            for backbone "auto", each candidate backbone's embeddings by name (in order of
            preference): the backbone is then chosen on the training part
            (`heads.backbone_choice`), and the summary records every candidate's score. Or
            `heads.fusion.Fused`: each part's embeddings, joined with weights chosen on the
            training part; the summary's `fusion` records the parts and weights.
        targets: n targets: ``str`` labels (classification), sequences of ``str`` (multi-label)
            or numbers (regression); see `heads.targets.encode_targets`.
        params: Hyper-parameters as strings (the API's map<string, string>).
        validation_fraction: Share held out for metrics, in [0, 0.9].
        progress: Optional progress callback, see `Progress`.
        should_stop: Optional; once it returns True, training stops at its next checkpoint
            (every stage, every mlp epoch and few batches, every CV candidate and fold) by
            raising `heads.stopping.TrainingStopped`.
        raw: The examples' raw inputs (texts, or downscaled pixels), in the order of
            `embeddings`: the head is then compared with a model trained from scratch on them,
            on the same split (`heads.transfer`), and the summary carries the report.
        fuse_candidates: Backbone "auto" also considers the fusion of every candidate
            (`heads.backbone_choice.choose_backbone`).

    Returns:
        The trained head with verified ONNX bytes.

    Raises:
        InvalidTrainingData: Bad targets or embeddings (``.field`` names the example).
        InvalidParams: Unknown kind, kind/task mismatch, bad parameter or validation fraction.
        HeadVerificationError: The ONNX export does not reproduce the fitted model.
        TrainingStopped: ``should_stop`` returned True.
    """
    with stop_checks(should_stop):
        return _train(
            kind, embeddings, targets, params, validation_fraction, progress, raw, fuse_candidates
        )


def _train(
    kind: str,
    embeddings: np.ndarray | Mapping[str, np.ndarray] | Fused,
    targets: Sequence[object],
    params: Mapping[str, str] | None,
    validation_fraction: float,
    progress: Progress | None,
    raw: RawInputs | None,
    fuse_candidates: bool,
) -> TrainedHead:
    def report(stage: str, fraction: float) -> None:
        checkpoint()  # every stage boundary is a place to stop
        if progress is not None:
            progress(stage, fraction)

    fraction = check_validation_fraction(validation_fraction)
    head_kind, encoded, parsed = _resolve(kind, targets, params)
    candidates: dict[str, np.ndarray] | None = None
    fused: dict[str, np.ndarray] | None = None
    if isinstance(embeddings, Fused):
        fused = {name: _check_embeddings(e, len(encoded)) for name, e in embeddings.parts.items()}
        if len(fused) < 2:
            raise InvalidTrainingData("backbone", "a fused backbone joins two parts or more")
        x = next(iter(fused.values()))
    elif isinstance(embeddings, Mapping):
        candidates = {name: _check_embeddings(e, len(encoded)) for name, e in embeddings.items()}
        if not candidates:
            raise InvalidTrainingData("backbone", "no candidate backbone to choose from")
        x = next(iter(candidates.values()))
    else:
        x = _check_embeddings(embeddings, len(encoded))
    if raw is not None and len(raw) != len(encoded):
        raise InvalidTrainingData(
            "examples", f"{len(raw)} raw inputs for {len(encoded)} targets; need one per example"
        )

    report("split", 0.0)
    train, val = split_indices(encoded, fraction)
    kind_scores: list[KindScore] = []
    backbone_scores: list[BackboneScore] = []
    fusion: list[FusedPart] = []
    with single_threaded_blas():
        fit_at = 0.05
        if candidates:  # backbone "auto": a probe on the same folds of every backbone
            report("choosing backbone", 0.01)
            choice = choose_backbone(
                {name: e[train] for name, e in candidates.items()},
                encoded.subset(train),
                lambda done: report("choosing backbone", 0.01 + 0.2 * done),
                with_fusion=fuse_candidates,
            )
            backbone_scores = choice.scores
            if choice.weights:
                fusion = describe_parts(list(candidates), list(candidates.values()), choice.weights)
                x = fuse(list(candidates.values()), choice.weights)
            else:
                x = candidates[choice.name]
            fit_at = 0.25
        if fused:  # the parts' weights, by a probe on the same folds of each weighting
            report("choosing weights", 0.01)
            parts = list(fused.values())
            splits = folds(encoded.subset(train))
            weights = choose_weights(
                [part[train] for part in parts],
                lambda fused_x: weight_probe_scores(fused_x, encoded.subset(train), splits),
                lambda done: report("choosing weights", 0.01 + 0.2 * done),
            ).weights
            fusion = describe_parts(list(fused), parts, weights)
            x = fuse(parts, weights)
            fit_at = 0.25
        if head_kind is None:  # "auto": every candidate on the same folds of the training part
            start = fit_at - 0.03
            report("choosing kind", start)
            head_kind, parsed, kind_scores = choose_kind(
                x[train],
                encoded.subset(train),
                lambda done: report("choosing kind", start + (0.45 - start) * done),
            )
            fit_at = 0.45
        report("fit", fit_at)
        first = head_kind.fit(x[train], encoded.subset(train), parsed)
        report("evaluate", 0.6)
        val_scores = first.model.scores(x[val]) if len(val) else np.empty((0,))
        metrics = evaluate(val_scores, encoded.subset(val), num_train=len(train))
        confusion = confusion_matrix(val_scores, encoded.subset(val))
        transfer = None
        if raw is not None:
            report("baseline", 0.62)
            transfer = compare_with_baseline(raw, encoded, train, val, val_scores)
        final = first
        if len(val):
            report("refit", 0.65)
            final = head_kind.fit(x, encoded, first.params)
        report("export", 0.9)
        verify_on = x[val] if len(val) else x[train]
        onnx_bytes = export_verified(final.model, x.shape[1], verify_on, encoded.task)
    report("done", 1.0)
    summary = TrainingSummary(
        kind=head_kind.name,
        task=encoded.task,
        labels=list(encoded.labels),
        metrics=metrics,
        params={k: format_value(v) for k, v in final.params.items()},
        embedding_dim=int(x.shape[1]),
        num_examples=len(encoded),
        data_hash=data_hash(x, encoded),
        onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        transfer=transfer,
        kind_scores=kind_scores,
        backbone_scores=backbone_scores,
        confusion_matrix=confusion,
        fusion=fusion,
    )
    return TrainedHead(summary, onnx_bytes)
