"""Serving a stored head: load its ONNX under its card, predict.

Needs only numpy and onnxruntime (no sklearn, no skl2onnx), and runs no stored code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from heads.card import HeadCard
from heads.contract import INPUT_NAME, MULTI_LABEL_THRESHOLD, output_name
from heads.errors import HeadFormatError, InvalidInput
from heads.session import new_session
from heads.targets import Task


@dataclass(frozen=True)
class Prediction:
    """One input's prediction.

    Attributes:
        label: Top label (classification and multi-label); "" for regression.
        scores: (label, probability) pairs, best first (ties in label order), cut to top_k.
        labels: Multi-label only: labels with probability > 0.5, best first.
        value: Regression only: the predicted value.
    """

    label: str = ""
    scores: list[tuple[str, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    value: float | None = None


class LoadedHead:
    """A head ready to predict. Thread-safe: onnxruntime sessions may be run concurrently."""

    def __init__(self, card: HeadCard, session: ort.InferenceSession, size_bytes: int) -> None:
        """Use `from_bytes`."""
        self.card = card
        self._session = session
        self._output = output_name(card.task)
        #: Size of the ONNX bytes, for the service's cache accounting.
        self.size_bytes = size_bytes

    @classmethod
    def from_bytes(cls, card: HeadCard, onnx_bytes: bytes) -> LoadedHead:
        """Loads a head's ONNX bytes, checking them against its card.

        Raises:
            HeadFormatError: The bytes' SHA-256 is not the card's ``onnx_sha256``, onnxruntime
                cannot load them, or the graph's inputs/outputs are not the contract's for the
                card's task, dimension and labels.
        """
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if digest != card.onnx_sha256:
            raise HeadFormatError(
                f"ONNX bytes have SHA-256 {digest}, the card says {card.onnx_sha256}"
            )
        try:
            session = new_session(onnx_bytes)
        except Exception as exc:  # onnxruntime's exception types are not part of its API
            raise HeadFormatError(f"ONNX head does not load: {exc}") from exc
        _check_signature(session, card)
        return cls(card, session, len(onnx_bytes))

    def predict(self, embeddings: np.ndarray, top_k: int = 0) -> list[Prediction]:
        """Predicts for a batch of embeddings.

        Args:
            embeddings: (n, embedding_dim) array; n may be 0.
            top_k: How many (label, score) pairs to return per input; 0 means all labels.

        Returns:
            One `Prediction` per row.

        Raises:
            InvalidInput: On field ``inputs`` for a wrong shape or non-finite values, on field
                ``top_k`` for a negative top_k.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 0:
            raise InvalidInput("top_k", f"must be an integer >= 0, got {top_k!r}")
        x = np.asarray(embeddings)
        dim = self.card.embedding_dim
        if x.ndim != 2 or x.shape[1] != dim:
            raise InvalidInput(
                "inputs",
                f"head {self.card.name!r} takes embeddings of dimension {dim}, got shape {x.shape}",
            )
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise InvalidInput("inputs", "embeddings must be finite numbers")
        if x.shape[0] == 0:
            return []
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        out = np.asarray(self._session.run([self._output], {INPUT_NAME: x32})[0])
        if self.card.task is Task.REGRESSION:
            return [Prediction(value=float(v)) for v in out.reshape(-1)]
        return [self._rank(row, top_k) for row in out]

    def _rank(self, row: np.ndarray, top_k: int) -> Prediction:
        labels = self.card.labels
        # Stable sort on -score: ties keep label order, so results are deterministic.
        order = np.argsort(-row, kind="stable")
        ranked = [(labels[j], float(row[j])) for j in order]
        present: list[str] = []
        if self.card.task is Task.MULTI_LABEL:
            present = [lab for lab, p in ranked if p > MULTI_LABEL_THRESHOLD]
        cut = ranked[:top_k] if top_k else ranked
        return Prediction(label=ranked[0][0], scores=cut, labels=present)


def _check_signature(session: ort.InferenceSession, card: HeadCard) -> None:
    inputs = session.get_inputs()
    outputs = {o.name: o for o in session.get_outputs()}
    want = output_name(card.task)
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or want not in outputs:
        raise HeadFormatError(
            f"ONNX head does not follow the contract: inputs {[i.name for i in inputs]}, "
            f"outputs {sorted(outputs)}; wanted {INPUT_NAME!r} -> {want!r}"
        )
    in_dims = inputs[0].shape
    if len(in_dims) != 2 or (isinstance(in_dims[1], int) and in_dims[1] != card.embedding_dim):
        raise HeadFormatError(f"ONNX head input shape {in_dims} is not [N, {card.embedding_dim}]")
    if card.task is not Task.REGRESSION:
        out_dims = outputs[want].shape
        width = out_dims[1] if len(out_dims) == 2 else None
        if isinstance(width, int) and width != len(card.labels):
            raise HeadFormatError(
                f"ONNX head outputs {width} probabilities, the card has {len(card.labels)} labels"
            )
