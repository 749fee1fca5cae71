"""Real head cards for the protocol's unit tests (what the registry would hand the servicer)."""

from __future__ import annotations

from heads import HeadCard

DIM = 4


def head_card(task: str, labels: list[str], dim: int = DIM) -> HeadCard:
    return HeadCard(
        tenant="acme", name="h", version=2, backbone="b", backbone_fingerprint="f" * 64,
        created_at="2026-01-02T03:04:05+00:00", kind="logistic_regression", task=task,
        labels=labels, metrics={}, params={}, embedding_dim=dim, num_examples=10,
        data_hash="0" * 64, onnx_sha256="1" * 64,
    )  # fmt: skip
