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
