"""Text preprocessing: the exported tokenizer.json through the `tokenizers` library (no transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


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


def plan_batches(lengths: list[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Groups item indices into inference batches that waste little padding.

    Items are sorted by length, so each batch holds texts of similar length; a batch closes when
    one more item would exceed `max_batch_size` items or `max_batch_tokens` padded tokens.

    Returns:
        Lists of indices into `lengths`, each list one batch, shortest texts first.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending: this item is the longest of the batch if it joins it.
        padded = (len(current) + 1) * max(lengths[index], 1)
        if current and (len(current) >= max_batch_size or padded > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
