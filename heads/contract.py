"""The ONNX I/O contract every head honours, whatever its kind.

The serving side relies on these names only:

* input ``embedding``: float32 [N, embedding_dim];
* classification and multi-label: output ``probabilities``, float32 [N, len(card.labels)], columns
  in the card's label order (multi-label: the probability of each label being present, columns
  do not sum to 1);
* regression: output ``value``, float32 [N].

Graphs use the default ONNX domain at `OPSET` (and ``ai.onnx.ml`` where skl2onnx needs it), which
every onnxruntime this project supports (>= 1.20) runs.
"""

from __future__ import annotations

from heads.targets import Task

INPUT_NAME = "embedding"
PROBABILITIES = "probabilities"
VALUE = "value"
#: Probability above which a multi-label head says a label is present.
MULTI_LABEL_THRESHOLD = 0.5
#: Default-domain opset of exported heads; ai.onnx.ml at `ML_OPSET`.
OPSET = 17
ML_OPSET = 3


def output_name(task: Task) -> str:
    """Returns the name of the single output a head for ``task`` has."""
    return VALUE if task is Task.REGRESSION else PROBABILITIES
