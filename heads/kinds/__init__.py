"""Registry of head kinds.

The built-in kinds are listed below; a new kind is one more entry there, nothing else changes.
The torch ``mlp`` kind registers only where torch is installed (looked up with ``find_spec``,
which imports nothing: ``import heads`` must not pay for, or need, torch); elsewhere asking for
it names the missing dependency instead of calling the kind unknown.
"""

from __future__ import annotations

from importlib.util import find_spec

from heads.errors import InvalidParams, shown
from heads.kinds.base import FitResult, FittedModel, HeadKind
from heads.kinds.knn import KnnKind
from heads.kinds.linear_svm import LinearSvmKind
from heads.kinds.logistic import LogisticRegressionKind
from heads.kinds.mlp import MlpKind
from heads.kinds.ridge import RidgeKind
from heads.targets import Task

DEFAULT_KIND = "logistic_regression"

_BUILT_IN: tuple[HeadKind, ...] = (
    LogisticRegressionKind(),
    LinearSvmKind(),
    KnnKind(),
    RidgeKind(),
    *((MlpKind(),) if find_spec("torch") is not None else ()),
)
_REGISTRY: dict[str, HeadKind] = {kind.name: kind for kind in _BUILT_IN}
#: Kinds this code has but this installation cannot train, with the reason.
_UNAVAILABLE: dict[str, str] = {}
if MlpKind.name not in _REGISTRY:
    _UNAVAILABLE[MlpKind.name] = (
        "needs torch, which is not installed on this server (pip install 'transferd[export]')"
    )


def available_kinds() -> list[str]:
    """Returns the names of all registered kinds, sorted."""
    return sorted(_REGISTRY)


def candidate_kinds(task: Task) -> list[HeadKind]:
    """Every kind this installation can train that does `task`, the default kind first."""
    return [kind for kind in _BUILT_IN if task in kind.tasks]


def get_kind(name: str, task: Task | None = None) -> HeadKind:
    """Looks a kind up, checking it supports the task.

    Args:
        name: The kind's name; the empty string means `DEFAULT_KIND` (the API's unset field).
        task: If given, the task the kind must support.

    Raises:
        InvalidParams: On field ``kind``: the kind is unknown, cannot be trained here (a missing
            optional dependency), or does not support ``task``.
    """
    name = name or DEFAULT_KIND
    kind = _REGISTRY.get(name)
    if kind is None and name in _UNAVAILABLE:
        raise InvalidParams("kind", f"kind {shown(name)} {_UNAVAILABLE[name]}")
    if kind is None:
        raise InvalidParams(
            "kind", f"unknown kind {shown(name)}; known: {', '.join(available_kinds())}"
        )
    if task is not None and task not in kind.tasks:
        supporting = sorted(k.name for k in _REGISTRY.values() if task in k.tasks)
        raise InvalidParams(
            "kind",
            f"kind {shown(name)} does not do {task.value}; kinds that do: {', '.join(supporting)}",
        )
    return kind


__all__ = [
    "DEFAULT_KIND",
    "FitResult",
    "FittedModel",
    "HeadKind",
    "available_kinds",
    "candidate_kinds",
    "get_kind",
]
