"""Text preprocessing: the exported tokenizer.json through the `tokenizers` library (no transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from service.backbones.batcher import CallPolicy


@dataclass(frozen=True)
class TokenizedText:
    """One text as token ids, ready to be padded into a batch."""

    ids: np.ndarray  # int64, 1-D, at most max_sequence_length long
    truncated: bool

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])


class TextPreprocessor:
    """Tokenizes like sentence-transformers: truncation at the card's length, no padding."""

    def __init__(self, tokenizer_file: Path, max_sequence_length: int) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_sequence_length)

    def tokenize(self, texts: list[str]) -> list[TokenizedText]:
        """Tokenizes a request's texts (call it off the event loop: it is CPU work)."""
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return [
            TokenizedText(np.asarray(enc.ids, dtype=np.int64), bool(enc.overflowing))
            for enc in encodings
        ]


def collate_text(items: list[TokenizedText]) -> dict[str, np.ndarray]:
    """Pads a batch to its own longest text (never to a fixed length: padding is wasted compute)."""
    length = max(item.length for item in items)
    ids = np.zeros((len(items), length), dtype=np.int64)
    mask = np.zeros((len(items), length), dtype=np.int64)
    for row, item in enumerate(items):
        ids[row, : item.length] = item.ids
        mask[row, : item.length] = 1
    return {"input_ids": ids, "attention_mask": mask}


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
