"""Registry of head kinds.

Built-in kinds register below. Another kind plugs in with `register_kind`; nothing else changes.
The torch ``mlp`` kind registers only where torch is installed (looked up with ``find_spec``,
which imports nothing: ``import heads`` must not pay for, or need, torch); elsewhere asking for
it names the missing dependency instead of calling the kind unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

from heads.errors import InvalidParams, shown
from heads.kinds.base import FitResult, FittedModel, HeadKind
from heads.kinds.knn import KnnKind
from heads.kinds.linear_svm import LinearSvmKind
from heads.kinds.logistic import LogisticRegressionKind
from heads.kinds.mlp import MlpKind
from heads.kinds.ridge import RidgeKind
from heads.params import ParamSpec
from heads.targets import Task

DEFAULT_KIND = "logistic_regression"

_REGISTRY: dict[str, HeadKind] = {}
#: Kinds this code has but this installation cannot train, with the reason.
_UNAVAILABLE: dict[str, str] = {}


def register_kind(kind: HeadKind) -> None:
    """Adds a kind to the registry.

    Raises:
        ValueError: A kind of that name is already registered.
    """
    if kind.name in _REGISTRY:
        raise ValueError(f"head kind {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind


def available_kinds() -> list[str]:
    """Returns the names of all registered kinds, sorted."""
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class KindInfo:
    """A kind as the service may describe it to clients."""

    name: str
    description: str
    tasks: tuple[str, ...]
    params: dict[str, ParamSpec]


def describe_kinds() -> list[KindInfo]:
    """Returns every registered kind with its tasks and parameter declarations, sorted by name."""
    return [
        KindInfo(k.name, k.description, tuple(sorted(t.value for t in k.tasks)), dict(k.params))
        for k in (_REGISTRY[name] for name in available_kinds())
    ]


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


for _kind in (LogisticRegressionKind(), LinearSvmKind(), KnnKind(), RidgeKind()):
    register_kind(_kind)
if find_spec("torch") is not None:
    register_kind(MlpKind())
else:
    _UNAVAILABLE[MlpKind.name] = (
        "needs torch, which is not installed on this server (pip install 'transferd[export]')"
    )

__all__ = [
    "DEFAULT_KIND",
    "FitResult",
    "FittedModel",
    "HeadKind",
    "KindInfo",
    "available_kinds",
    "describe_kinds",
    "get_kind",
    "register_kind",
]
