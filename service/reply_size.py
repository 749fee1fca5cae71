"""How large a reply will be, known before it is built.

A Predict reply holds up to inputs × labels scores: a 3,000-label head asked for every score of
1,024 inputs makes a 46 MB reply. Building one that gRPC then refuses to send costs seconds of
CPU and gigabytes of memory, so the size is bounded from the head's card first, in O(1).
"""

from __future__ import annotations

import json

from heads import HeadCard
from service.errors import ResourceExhausted

# Of the reply besides its predictions: the head's name (at most 64 bytes) and version.
REPLY_OVERHEAD = 80
# Of one Prediction besides its scores and labels: tags, lengths, a regression value, framing.
PREDICTION_OVERHEAD = 24
DOUBLE_FIELD = 9  # tag and 8 bytes


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _string_field(size: int) -> int:
    """Wire bytes of a string field (or repeated string element) of `size` bytes."""
    return 1 + _varint_size(size) + size


def _score_bytes(label_size: int) -> int:
    """Wire bytes of one LabelScore{label, score} inside a Prediction."""
    inner = _string_field(label_size) + DOUBLE_FIELD
    return 1 + _varint_size(inner) + inner


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _base_and_scores(card: HeadCard, top_k: int) -> tuple[int, int, int]:
    """Per prediction: bytes besides the scores, bytes of the scores asked for, and of one score
    of the longest label."""
    label_sizes = [len(label.encode()) for label in card.labels]
    longest = max(label_sizes, default=0)
    if top_k and top_k < len(label_sizes):
        scores = top_k * _score_bytes(longest)
    else:
        scores = sum(_score_bytes(size) for size in label_sizes)
    # Multi-label heads also list every label above the threshold: at worst all of them.
    labels = sum(_string_field(size) for size in label_sizes) if card.task == "multi_label" else 0
    return PREDICTION_OVERHEAD + _string_field(longest) + labels, scores, _score_bytes(longest)


def predict_reply_bound(card: HeadCard, inputs: int, top_k: int) -> int:
    """An upper bound of the serialized PredictResponse's size, in bytes (O(labels))."""
    base, scores, _one = _base_and_scores(card, top_k)
    return REPLY_OVERHEAD + inputs * (base + scores)


def check_predict_reply(card: HeadCard, inputs: int, top_k: int, limit: int) -> None:
    """Refuses a Predict whose reply could exceed `limit` bytes, saying what would fit.

    Raises:
        ResourceExhausted: naming the bound, the limit and the largest top_k that fits.
    """
    base, scores, one = _base_and_scores(card, top_k)
    size = REPLY_OVERHEAD + inputs * (base + scores)
    if size <= limit:
        return
    fitting = max(0, ((limit - REPLY_OVERHEAD) // max(inputs, 1) - base) // one)
    raise ResourceExhausted(
        f"the reply would be up to {_mib(size)}, over the limit of {_mib(limit)}; "
        f"ask for at most top_k={fitting} scores per input, or send fewer inputs"
    )


# The longest request id a ModelInfer may carry: the reply echoes it.
MAX_REQUEST_ID_BYTES = 1024
# Of an Open Inference Protocol reply besides the tensors' elements: the model's name and
# version, the request id, and each output's name, datatype and shape.
TENSOR_REPLY_OVERHEAD = MAX_REQUEST_ID_BYTES + 1024
BYTES_ELEMENT_PREFIX = 4  # a BYTES element's length, before its bytes
FP32 = 4


def tensor_reply_bound(card: HeadCard, inputs: int) -> int:
    """An upper bound of an Open Inference Protocol reply's size with every output of `card`:
    LABEL (the longest label per input), SCORES (a float per label, and every label as JSON
    once, its `labels` parameter), LABELS (multi-label: at most every label as JSON, per input)
    or VALUE (a float)."""
    if not card.labels:
        return TENSOR_REPLY_OVERHEAD + inputs * FP32
    label = BYTES_ELEMENT_PREFIX + max(len(label.encode()) for label in card.labels)
    scores = FP32 * len(card.labels)
    # A JSON list of some labels is at most as long as the list of all of them.
    every_label = len(json.dumps(card.labels, ensure_ascii=False).encode())
    labels = BYTES_ELEMENT_PREFIX + every_label if card.task == "multi_label" else 0
    return TENSOR_REPLY_OVERHEAD + every_label + inputs * (label + scores + labels)


def check_tensor_reply(card: HeadCard, inputs: int, limit: int) -> None:
    """Refuses a ModelInfer whose reply could exceed `limit` bytes, saying how many inputs fit.

    Raises:
        ResourceExhausted: naming the bound, the limit and the most inputs that fit.
    """
    size = tensor_reply_bound(card, inputs)
    if size <= limit:
        return
    fixed = tensor_reply_bound(card, 0)
    per_input = (size - fixed) // max(inputs, 1)
    fitting = max(0, (limit - fixed) // max(per_input, 1))
    raise ResourceExhausted(
        f"the reply would be up to {_mib(size)}, over the limit of {_mib(limit)}; "
        f"send at most {fitting} inputs per request"
    )
