"""How a request's texts become Triton inference calls: length buckets that let Triton batch.

Triton's dynamic batcher merges queued requests into one model execution only when their input
shapes are equal (apart from the batch axis); ragged batching would lift that, but it needs a
model that takes flattened, unpadded inputs, and our ONNX graph takes padded [batch, sequence]
tensors. So the gateway pads each call to a *bucket* length (16, 24, 32, 48, 64, 96, 128, 192,
256 for a 256-token model: powers of two and the midpoints 1.5 times them) instead of to its own
longest text: concurrent calls of similar length, from any gateway replica, then share a shape and
Triton merges them. The price is padding up to the bucket (under a third of it, bar calls of
fewer than 16 tokens) in exchange for full GPU batches. Within one request, texts are sorted by length and cut into calls by the same dynamic
programme the embedded runtime uses (`text.plan_batches`), run on bucketed lengths, so that a few
long texts do not make many short ones pay for their bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service.backbones.text import TokenizedText, collate_text, plan_batches

MIN_BUCKET = 16


def bucket_length(length: int, max_length: int) -> int:
    """The padded length of a call whose longest sequence has `length` tokens.

    Buckets grow by 1.5x then 4/3x (16, 24, 32, 48, 64, ...), so a bucket is never more than 1.5
    times the one below it: padding stays under a third of the padded length.
    """
    bucket = MIN_BUCKET
    while bucket < length:
        bucket = bucket * 3 // 2 if bucket & (bucket - 1) == 0 else bucket * 4 // 3
    return min(bucket, max(max_length, length))


def text_call_planner(
    max_length: int, max_batch_size: Callable[[], int]
) -> Callable[[list[Any]], list[list[int]]]:
    """Plans a request's Triton calls: groups of item indices, each padded to one bucket.

    Args:
        max_length: The backbone's longest sequence (the last bucket).
        max_batch_size: Returns the model's max_batch_size as Triton reports it (it is read at
            start-up and again when Triton comes back, so it may change).
    """

    def plan(items: list[TokenizedText]) -> list[list[int]]:
        size = max(1, max_batch_size())
        lengths = [bucket_length(item.length, max_length) for item in items]
        # No token limit beyond the model's own: a bucketed call is at most size x max_length.
        return plan_batches(lengths, size, size * max(max(lengths), max_length))

    return plan


def collate_text_bucketed(
    max_length: int,
) -> Callable[[list[TokenizedText]], dict[str, np.ndarray]]:
    """Pads a call's texts to the bucket of its longest text (zeros: the mask hides them)."""

    def collate(items: list[TokenizedText]) -> dict[str, np.ndarray]:
        feed = collate_text(items)
        length = next(iter(feed.values())).shape[1]
        padded = bucket_length(length, max_length)
        return {name: np.pad(array, ((0, 0), (0, padded - length))) for name, array in feed.items()}

    return collate
