"""Head card JSON round-trip, strict loading, data hash."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from heads import FORMAT_VERSION, HeadCard, HeadFormatError, Task, data_hash, utc_now

HASH = "ab" * 32


def _card(**changes: object) -> HeadCard:
    fields = {
        "tenant": "acme",
        "name": "sentiment",
        "version": 3,
        "kind": "logistic_regression",
        "task": Task.CLASSIFICATION,
        "labels": ["négatif", "positive"],
        "metrics": {"accuracy": 0.9, "num_train": 80.0, "support/négatif": 10.0},
        "params": {"C": "10.0", "max_iter": "1000", "class_weight": "none"},
        "backbone": "all-MiniLM-L6-v2",
        "backbone_fingerprint": "cd" * 32,
        "embedding_dim": 384,
        "num_examples": 100,
        "data_hash": HASH,
        "created_at": "2025-03-01T10:20:30.123Z",
        "onnx_sha256": "ef" * 32,
    }
    fields.update(changes)
    return HeadCard(**fields)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    card = _card()
    text = card.to_json()
    assert HeadCard.from_json(text) == card
    assert HeadCard.from_json(text.encode()) == card
    data = json.loads(text)
    assert data["task"] == "classification" and data["format_version"] == FORMAT_VERSION
    assert card.task == "classification"  # StrEnum: compares with the plain string


def test_regression_card_round_trip() -> None:
    card = _card(task=Task.REGRESSION, labels=[], metrics={"r2": 0.5, "mae": 1.0})
    assert HeadCard.from_json(card.to_json()) == card


def test_card_does_not_alias_caller_containers() -> None:
    labels = ["a", "b"]
    card = _card(labels=labels)
    labels.append("c")
    assert card.labels == ["a", "b"]


def _mutated(**changes: object) -> str:
    data = json.loads(_card().to_json())
    for key, value in changes.items():
        if value is _DELETE:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


_DELETE = object()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        _mutated(tenant=_DELETE),
        _mutated(onnx_sha256=_DELETE),
        _mutated(extra_key="x"),
        _mutated(version="3"),
        _mutated(version=0),
        _mutated(version=True),
        _mutated(version=1.5),
        _mutated(task="clustering"),
        _mutated(task=1),
        _mutated(labels="a,b"),
        _mutated(labels=["a", ""]),
        _mutated(labels=["a", "a"]),
        _mutated(labels=[]),  # classification without labels
        _mutated(metrics={"accuracy": "high"}),
        _mutated(metrics=[1.0]),
        _mutated(params={"C": 10.0}),
        _mutated(embedding_dim=0),
        _mutated(num_examples=-1),
        _mutated(data_hash="abc"),
        _mutated(onnx_sha256="AB" * 32),
        _mutated(created_at="yesterday"),
        _mutated(created_at="2025-03-01T10:20:30+02:00"),
        _mutated(created_at="2025-03-01T10:20:30"),  # naive: not known to be UTC
        _mutated(format_version=2),
        _mutated(name=""),
        _mutated(backbone=None),
    ],
)
def test_strict_loading(text: str) -> None:
    with pytest.raises(HeadFormatError):
        HeadCard.from_json(text)


def test_non_finite_metrics_are_refused() -> None:
    with pytest.raises(HeadFormatError):
        _card(metrics={"accuracy": float("nan")})


def test_utc_now_is_accepted() -> None:
    card = replace(_card(), created_at=utc_now())
    assert card.created_at.endswith("Z")


def test_data_hash_is_canonical_and_sensitive() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    base = data_hash(x, ["a", "b", "a", "b"])
    assert len(base) == 64
    assert data_hash(x.astype(np.float64), ["a", "b", "a", "b"]) == base  # float32 canonical
    assert data_hash(x, ["a", "b", "a", "c"]) != base
    assert data_hash(x[[1, 0, 2, 3]], ["b", "a", "a", "b"]) != base  # order is part of the data
    changed = x.copy()
    changed[2, 3] += 1e-3
    assert data_hash(changed, ["a", "b", "a", "b"]) != base
    # Multi-label: order and repetition inside one example's labels do not matter.
    assert data_hash(x, [["a", "b"], [], ["b"], ["a"]]) == data_hash(
        x, [["b", "a", "a"], [], ["b"], ["a"]]
    )
    # Ints and floats are the same regression value; a value differs from a label.
    assert data_hash(x, [1, 2, 3, 4]) == data_hash(x, [1.0, 2.0, 3.0, 4.0])
    assert data_hash(x, ["1", "2", "3", "4"]) != data_hash(x, [1.0, 2.0, 3.0, 4.0])
