"""Head card JSON round-trip, strict loading naming the field, data hash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from heads import (
    FORMAT_VERSION,
    HeadCard,
    HeadFormatError,
    Task,
    TrainingSummary,
    data_hash,
    iso_utc,
    utc_now,
)

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
        _mutated(format_version=_DELETE),  # defaulted in code, required on disk
    ],
)
def test_strict_loading(text: str) -> None:
    with pytest.raises(HeadFormatError):
        HeadCard.from_json(text)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": "3"}, "version"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"labels": ["a", "a"]}, "labels"),
        ({"metrics": {"accuracy": "high"}}, "metrics.accuracy"),
        ({"onnx_sha256": "AB" * 32}, "onnx_sha256"),
        ({"created_at": "2025-03-01T10:20:30"}, "created_at"),
        ({"format_version": 2}, "format_version"),
        ({"extra_key": "x"}, "extra_key"),
        ({"tenant": _DELETE}, "tenant"),
    ],
)
def test_a_bad_card_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(HeadFormatError, match=rf"^invalid head card: {field}: "):
        HeadCard.from_json(_mutated(**changes))


def test_the_card_is_frozen() -> None:
    card = _card()
    with pytest.raises(ValueError):
        card.version = 4  # type: ignore[misc]


def test_stored_cards_of_the_current_format_load_unchanged() -> None:
    """A card as an earlier release wrote it (every key, sorted, indented) loads, and writes
    back byte for byte."""
    stored = json.dumps(
        {
            "backbone": "all-minilm-l6-v2", "backbone_fingerprint": "cd" * 32,
            "created_at": "2025-03-01T10:20:30.123Z", "data_hash": HASH, "embedding_dim": 384,
            "format_version": 1, "kind": "logistic_regression", "labels": ["a", "b"],
            "metrics": {"accuracy": 1.0, "num_train": 8.0}, "name": "h", "num_examples": 10,
            "onnx_sha256": "ef" * 32, "params": {"C": "1.0"}, "task": "classification",
            "tenant": "acme", "version": 1,
        },
        sort_keys=True, indent=2, ensure_ascii=False,
    )  # fmt: skip
    assert HeadCard.from_json(stored).to_json() == stored


def test_a_card_is_its_training_summary_plus_where_it_is_published() -> None:
    card = _card()
    summary = TrainingSummary(**{k: getattr(card, k) for k in TrainingSummary.model_fields})
    assert HeadCard(**dict(summary), **{k: getattr(card, k) for k in PUBLISHED}) == card


PUBLISHED = ("tenant", "name", "version", "backbone", "backbone_fingerprint", "created_at")


def test_non_finite_metrics_are_refused() -> None:
    with pytest.raises(HeadFormatError):
        _card(metrics={"accuracy": float("nan")})


def test_utc_now_is_accepted() -> None:
    now = utc_now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    card = _card(created_at=iso_utc(now))
    assert card.created_at.endswith("Z")
    east = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(east) == "2025-03-01T10:00:00.000Z"
    assert iso_utc(datetime(2025, 3, 1, 10, tzinfo=UTC)) == "2025-03-01T10:00:00.000Z"


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


REPORT = {
    "baseline": "tfidf_word_char+ridge", "baseline_score": 1.0,
    "head_score": 0.55, "metric": "accuracy", "negative_transfer": True, "warning": "try another",
}  # fmt: skip


def test_a_transfer_report_round_trips_and_its_absence_writes_no_key() -> None:
    card = _card(transfer=REPORT)
    assert card.transfer is not None and card.transfer.negative_transfer
    assert HeadCard.from_json(card.to_json()) == card
    assert "transfer" not in json.loads(_card().to_json())  # readable by older releases


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({**REPORT, "baseline_score": float("nan")}, "transfer.baseline_score"),
        ({**REPORT, "negative_transfer": "yes"}, "transfer.negative_transfer"),
        ({**REPORT, "extra": 1}, "transfer.extra"),
    ],
)
def test_a_bad_transfer_report_names_its_field(report: dict, field: str) -> None:
    with pytest.raises(HeadFormatError, match=rf"^invalid head card: {field}: "):
        HeadCard.from_json(_mutated(transfer=report))
