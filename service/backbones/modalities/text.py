"""The text modality: checks, token costs, the tokenizer pool, and calls cut by padded length."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from heads import RawInputs
from service.backbones.inputs import Input, TextInput, check_text
from service.backbones.modalities.base import Batching, Prepared
from service.backbones.modalities.tensors import TEXT_TENSORS, TensorSpec
from service.backbones.modalities.text_batches import (
    bucket_length,
    bucket_lengths,
    bucketed_call_policy,
    collate_text,
    collate_text_bucketed,
    text_call_policy,
)
from service.backbones.modalities.text_preprocessing import TextPreprocessor, TokenizedText
from service.backbones.runtimes.base import RuntimeNeeds

# The text the warm-up calls tokenize (cut to each shape's length).
_WARM_UP_TEXT = "warm up " * 512


def text_tokens_bound(text: str, max_sequence_length: int) -> int:
    """An upper bound of the tokens a text becomes, without tokenizing it.

    Every token of a WordPiece or byte-level BPE vocabulary covers at least one UTF-8 byte, plus
    the two special tokens; truncation caps it at the model's length.
    """
    return min(max_sequence_length, len(text.encode("utf-8")) + 2)


class TextModality:
    """A text backbone's inputs: tokenized in the shared tokenizer pool, costed in tokens.

    Args:
        backbone: The backbone's name (error messages).
        tokenizer_file: The exported tokenizer.json.
        max_sequence_length: The model's longest sequence (the card's).
        max_text_bytes: The largest text accepted.
        pool: The tokenizer pool (shared by the text backbones).
    """

    unit = "tokens"

    def __init__(
        self,
        backbone: str,
        tokenizer_file: Path,
        max_sequence_length: int,
        max_text_bytes: int,
        pool: Executor,
    ) -> None:
        self._backbone = backbone
        self._max_length = max_sequence_length
        self._max_text_bytes = max_text_bytes
        self._pool = pool
        self.preprocessor = TextPreprocessor(tokenizer_file, max_sequence_length)

    def check(self, item: Input, where: str) -> None:
        check_text(item, self._backbone, self._max_text_bytes, where)

    def costs(self, inputs: list[Input]) -> list[int]:
        return [text_tokens_bound(_text(item), self._max_length) for item in inputs]

    async def prepare(
        self,
        inputs: list[Input],
        wheres: list[str],
        costs: list[int],
        tenant: str,
        deadline: float | None,
    ) -> Prepared:
        texts = [_text(item) for item in inputs]
        loop = asyncio.get_running_loop()
        tokenized = await loop.run_in_executor(self._pool, self.preprocessor.tokenize, texts)
        truncated = [item.length if item.truncated else 0 for item in tokenized]
        return Prepared(list(tokenized), truncated)

    async def baseline_inputs(
        self, inputs: list[Input], wheres: list[str], costs: list[int], tenant: str
    ) -> RawInputs:
        return RawInputs("text", tuple(_text(item) for item in inputs))

    def tensors(self) -> dict[str, TensorSpec]:
        return dict(TEXT_TENSORS)

    def batching(self, needs: RuntimeNeeds) -> Batching:
        if needs.bucketed:
            calls = bucketed_call_policy(
                self._max_length,
                needs.max_batch_size,
                needs.full_call_items,
                needs.max_batch_tokens,
            )
            collate = collate_text_bucketed(self._max_length)
        else:
            tokens = needs.max_batch_tokens or needs.full_call_items * self._max_length
            calls = text_call_policy(needs.full_call_items, tokens)
            collate = collate_text
        return Batching(calls, collate, lambda: self._warm_up_calls(needs))

    def _warm_up_calls(self, needs: RuntimeNeeds) -> list[list[Any]]:
        """One call of one text per bucket length (the shapes a bucketed runtime sees; on ONNX
        Runtime they span the lengths a call may have), then a full call of the shortest."""
        (longest,) = self.preprocessor.tokenize([_WARM_UP_TEXT])
        calls: list[list[Any]] = [
            [TokenizedText(longest.ids[:length], False)]
            for length in bucket_lengths(self._max_length)
            if length <= longest.length
        ]
        shortest = calls[0][0] if calls else longest
        calls.append([shortest] * self._full_call_items(needs, shortest.length))
        return calls

    def _full_call_items(self, needs: RuntimeNeeds, length: int) -> int:
        """Items of the full warm-up call of `length`-token texts: the most a call may hold.

        Warm-up calls bypass the fair batcher's planner, so the token budget is applied here:
        max_batch_size texts of 16 tokens would exceed a budget below 16 x max_batch_size.
        """
        items = max(1, needs.max_batch_size())
        if needs.max_batch_tokens is None:
            return items
        padded = bucket_length(length, self._max_length) if needs.bucketed else length
        return max(1, min(items, needs.max_batch_tokens // padded))

    def start(self) -> None:
        """Nothing to start: the tokenizer pool is the server's."""

    async def close(self) -> None:
        """Nothing to stop: the tokenizer pool is the server's."""


def _text(item: Input) -> str:
    assert isinstance(item, TextInput), "checked by TextModality.check first"
    return item.text
