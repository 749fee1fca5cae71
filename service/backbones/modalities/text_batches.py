"""How a request's texts become inference calls, for either runtime.

Embedded (ONNX Runtime): each call is padded to its own longest text, and `plan_batches` cuts a
request (sorted by length) into calls that waste as little padding as possible.

Triton: its dynamic batcher merges queued requests into one model execution only when their input
shapes are equal (apart from the batch axis); ragged batching would lift that, but it needs a
model that takes flattened, unpadded inputs, and our ONNX graph takes padded [batch, sequence]
tensors. So each call is padded to a *bucket* length (16, 24, 32, 48, 64, 96, 128, 192, 256 for a
256-token model: powers of two and the midpoints 1.5 times them) instead of to its own longest
text: concurrent calls of similar length, from any gateway replica, then share a shape and Triton
merges them. The price is padding up to the bucket (under a third of it, bar calls of fewer than
16 tokens) in exchange for full GPU batches. Requests are cut by the same `plan_batches`, run on
bucketed lengths, so that a few long texts do not make many short ones pay for their bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service.backbones.batcher import CallPolicy
from service.backbones.modalities.tensors import TEXT_IDS, TEXT_MASK
from service.backbones.modalities.text_preprocessing import TokenizedText


def collate_text(items: list[TokenizedText]) -> dict[str, np.ndarray]:
    """Pads a batch to its own longest text (never to a fixed length: padding is wasted compute)."""
    length = max(item.length for item in items)
    ids = np.zeros((len(items), length), dtype=np.int64)
    mask = np.zeros((len(items), length), dtype=np.int64)
    for row, item in enumerate(items):
        ids[row, : item.length] = item.ids
        mask[row, : item.length] = 1
    return {TEXT_IDS: ids, TEXT_MASK: mask}


# What one extra inference call costs, in padded tokens: per-call overhead and the poorer matrix
# efficiency of small batches. Measured on a 2-core x86 machine with bench/embed.py; the plan is
# not sensitive to it within a factor of two.
CALL_OVERHEAD_TOKENS = 64


def plan_batches(lengths: list[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Groups item indices into inference calls that waste as little padding as possible.

    A batch is padded to its longest item, so its cost is about `items x longest` tokens plus a
    fixed per-call overhead. Items are sorted by length and cut into contiguous groups by dynamic
    programming over that cost, under the `max_batch_size` and `max_batch_tokens` limits: a few
    long texts no longer make many short ones pay for their length.

    Returns:
        Lists of indices into `lengths`, each list one batch, shortest texts first.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sorted_lengths = [max(lengths[i], 1) for i in order]
    count = len(order)
    # best[j]: least cost of the first j sorted items; cut[j]: where the last batch starts.
    best = [0.0] + [float("inf")] * count
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        longest = sorted_lengths[end - 1]  # sorted: the last item of a group is its longest
        for start in range(end - 1, max(-1, end - 1 - max_batch_size), -1):
            size = end - start
            if size > 1 and size * longest > max_batch_tokens:
                break
            cost = best[start] + size * longest + CALL_OVERHEAD_TOKENS
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches: list[list[int]] = []
    end = count
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


def text_call_policy(max_batch_size: int, max_batch_tokens: int) -> CallPolicy:
    """How the fair batcher cuts texts into embedded inference calls.

    Each request is sorted by length and cut by `plan_batches` as if it ran alone (a large request
    pads as little as ever); a call costs its padded tokens; a group joins a call when both stay
    within the limits and merging pads less than a call of its own costs (the planner's own rule,
    so that merging never undoes its cuts); a full call (the quantum) is `max_batch_tokens`.
    """

    def plan(items: list[Any]) -> list[list[int]]:
        return plan_batches([item.length for item in items], max_batch_size, max_batch_tokens)

    def cost(items: list[Any]) -> float:
        return float(len(items) * max(item.length for item in items))

    def fits(call: list[Any], group: list[Any]) -> bool:
        count = len(call) + len(group)
        call_longest = max(item.length for item in call)
        group_longest = max(item.length for item in group)
        merged = count * max(call_longest, group_longest)
        apart = len(call) * call_longest + len(group) * group_longest + CALL_OVERHEAD_TOKENS
        return count <= max_batch_size and merged <= max_batch_tokens and merged <= apart

    return CallPolicy(plan, cost, fits, float(max_batch_tokens))


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
    max_length: int, max_batch_size: Callable[[], int], max_batch_tokens: int | None = None
) -> Callable[[list[Any]], list[list[int]]]:
    """Plans a request's Triton calls: groups of item indices, each padded to one bucket.

    Args:
        max_length: The backbone's longest sequence (the last bucket).
        max_batch_size: Returns the model's max_batch_size as Triton reports it (it is read at
            start-up and again when Triton comes back, so it may change).
        max_batch_tokens: Most padded tokens of one call, counted at the bucket length (None:
            no limit beyond the model's own, size x max_length).
    """

    def plan(items: list[TokenizedText]) -> list[list[int]]:
        size = max(1, max_batch_size())
        # Planned on the bucket lengths, the lengths the calls are padded to: the token budget
        # then bounds what is sent, bucket rounding included.
        lengths = [bucket_length(item.length, max_length) for item in items]
        tokens = max_batch_tokens or size * max(max(lengths), max_length)
        return plan_batches(lengths, size, tokens)

    return plan


def bucketed_call_policy(
    max_length: int,
    max_batch_size: Callable[[], int],
    full_call_items: int,
    max_batch_tokens: int | None = None,
) -> CallPolicy:
    """How the fair batcher sends bucketed calls: one planned group a call (Triton merges calls
    itself), each costing its padded tokens; a full call is `max_batch_tokens`, or without one
    `full_call_items` x `max_length`."""

    def cost(items: list[Any]) -> float:
        return float(len(items) * bucket_length(max(item.length for item in items), max_length))

    return CallPolicy(
        text_call_planner(max_length, max_batch_size, max_batch_tokens),
        cost,
        lambda call, group: False,
        float(max_batch_tokens or full_call_items * max_length),
    )


def bucket_lengths(max_length: int) -> list[int]:
    """Every bucket length up to `max_length`: the shapes a bucketed runtime is sent."""
    lengths = [bucket_length(1, max_length)]
    while lengths[-1] < max_length:
        lengths.append(bucket_length(lengths[-1] + 1, max_length))
    return lengths


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
