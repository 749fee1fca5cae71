"""A tiny text backbone for tests: a word-level tokenizer built here, its card, and an Embedder.

Nothing is downloaded and no pretrained file is read: the tokenizer is a `tokenizers` WordLevel
model over a fixed vocabulary (lower-cased, split on whitespace and punctuation; other words are
``[UNK]``), written to a folder of the caller's, and the model is a `DeterministicRuntime`. The
Embedder is the real one, over the real `TextModality` (tokenizer pool, truncation, text checks)
and a real `AdmissionGate`, as `service.backbones.loader` wires a served backbone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.normalizers import Lowercase
from tokenizers.pre_tokenizers import Whitespace

from service.backbones.admission import AdmissionGate
from service.backbones.card import BackboneCard
from service.backbones.embedder import Embedder, ServedBackbone
from service.backbones.embedding_cache import EmbeddingCache
from service.backbones.inputs import InputLimits
from service.backbones.modalities.tensors import TEXT_TENSORS
from service.backbones.modalities.text import TextModality
from service.backbones.modalities.text_batches import collate_text
from service.backbones.modalities.text_preprocessing import TextPreprocessor
from tests.support.deterministic_runtime import DeterministicRuntime, Projection

#: Short texts of three topics: a head trained on a few of each tells the topics apart.
TOPICS: dict[str, list[str]] = {
    "sports": [
        "the team won the football match",
        "a late goal won the final",
        "the striker scored twice in the match",
        "fans cheered as the team scored a goal",
        "the coach praised the team after the final",
        "the keeper saved a penalty in the match",
        "the players trained for the football final",
        "a goal from the striker won the cup",
    ],
    "cooking": [
        "simmer the sauce with garlic and onions",
        "bake the bread in a hot oven",
        "fry the onions in butter until golden",
        "stir the soup and add salt and pepper",
        "roast the vegetables in the oven with garlic",
        "whisk the eggs with butter and sugar",
        "season the sauce with salt and fresh herbs",
        "knead the dough and bake the bread",
    ],
    "weather": [
        "heavy rain and wind are expected tonight",
        "the storm brings snow to the mountains",
        "sunny skies and warm temperatures tomorrow",
        "a cold front brings rain and clouds",
        "strong wind and snow closed the pass",
        "clouds clear and the sun returns tomorrow",
        "the forecast says rain for the weekend",
        "temperatures drop as the storm arrives",
    ],
}

SPECIAL_TOKENS = ("[PAD]", "[UNK]")
TOKENIZER_FILE = "tokenizer.json"
_WORD = re.compile(r"\w+")


def vocabulary(texts: list[str]) -> dict[str, int]:
    """Word → id: the special tokens, then every word of `texts` in first-seen order."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for text in texts:
        for word in _WORD.findall(text.lower()):
            vocab.setdefault(word, len(vocab))
    return vocab


@dataclass(frozen=True)
class TinyTextBackbone:
    """A text backbone's folder (its tokenizer) and card; `vectors` is what it embeds texts to."""

    folder: Path
    card: BackboneCard
    vocab: dict[str, int]
    seed: int = 0

    @property
    def tokenizer_path(self) -> Path:
        assert self.card.tokenizer_file is not None
        return self.folder / self.card.tokenizer_file

    def token_id(self, word: str) -> int:
        """A word's id (``[UNK]``'s for a word outside the vocabulary)."""
        return self.vocab.get(word.lower(), self.vocab["[UNK]"])

    def vectors(self, texts: list[str]) -> np.ndarray:
        """The rows the backbone gives `texts`, computed without any runtime or batcher."""
        assert self.card.max_sequence_length is not None
        tokenized = TextPreprocessor(self.tokenizer_path, self.card.max_sequence_length).tokenize(
            texts
        )
        projection = Projection(self.card.dim, self.seed)
        return np.concatenate([projection(collate_text([item])) for item in tokenized])


def make_tiny_text_backbone(
    folder: Path,
    *,
    name: str = "tiny-text",
    dim: int = 32,
    max_sequence_length: int = 32,
    extra_words: tuple[str, ...] = ("warm", "up"),
) -> TinyTextBackbone:
    """Writes a WordLevel tokenizer into `folder` and returns the backbone with its card.

    The vocabulary is every word of `TOPICS` and `extra_words`. The card's fingerprint is the
    SHA-256 of the tokenizer file and the dim, so another vocabulary or width is another export.
    """
    folder.mkdir(parents=True, exist_ok=True)
    texts = [text for examples in TOPICS.values() for text in examples] + list(extra_words)
    vocab = vocabulary(texts)
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    path = folder / TOKENIZER_FILE
    tokenizer.save(str(path))
    digest = hashlib.sha256(path.read_bytes() + json.dumps({"dim": dim}).encode()).hexdigest()
    card = BackboneCard(
        name=name,
        modality="text",
        dim=dim,
        fingerprint=digest,
        input_names=list(TEXT_TENSORS),
        output_name="embedding",
        pooling="mean",
        normalized=True,
        source={"kind": "tests.support.tiny_backbone"},
        tokenizer_file=TOKENIZER_FILE,
        max_sequence_length=max_sequence_length,
    )
    return TinyTextBackbone(folder, card, vocab)


@dataclass
class TinyStack:
    """An Embedder serving one tiny backbone, and the parts a test looks into."""

    embedder: Embedder
    runtime: DeterministicRuntime
    served: ServedBackbone
    backbone: TinyTextBackbone

    @property
    def name(self) -> str:
        return self.backbone.card.name

    @property
    def admission(self) -> AdmissionGate:
        return self.served.admission


def build_embedder(
    backbone: TinyTextBackbone,
    tokenizers: ThreadPoolExecutor,
    *,
    capacity_tokens: int = 64 * 32,
    max_inputs: int = 64,
    max_text_bytes: int = 1024,
    max_batch_size: int = 4,
    max_batch_tokens: int | None = None,
    bucketed: bool = False,
    lanes: int = 2,
    cache_bytes: int = 0,
) -> TinyStack:
    """The served backbone as `service.backbones.loader` builds it, on a DeterministicRuntime.

    Args:
        backbone: The tiny backbone (tokenizer and card).
        tokenizers: The tokenizer pool (the server's preprocessing pool).
        capacity_tokens: The admission gate's capacity, in tokens (the server's is
            max_queued_inputs x max_sequence_length).
        max_inputs: Most inputs of one request.
        max_text_bytes: Largest text accepted.
        max_batch_size: Items of one runtime call.
        max_batch_tokens: Padded tokens of one runtime call (None: the modality's default).
        bucketed: Plan calls for Triton's needs (length buckets, no merging) instead of the
            embedded runtime's.
        lanes: Calls in flight at once.
        cache_bytes: The embedding cache's budget (0, the default here: no cache).
    """
    card = backbone.card
    assert card.max_sequence_length is not None
    modality = TextModality(
        card.name, backbone.tokenizer_path, card.max_sequence_length, max_text_bytes, tokenizers
    )
    runtime = DeterministicRuntime(
        card,
        modality,
        max_batch_size=max_batch_size,
        max_batch_tokens=max_batch_tokens,
        bucketed=bucketed,
        lanes=lanes,
        seed=backbone.seed,
    )
    served = ServedBackbone(
        card, modality, AdmissionGate(card.name, capacity_tokens, modality.unit), runtime
    )
    embedder = Embedder(
        {card.name: served}, InputLimits(max_inputs, max_text_bytes), EmbeddingCache(cache_bytes)
    )
    return TinyStack(embedder, runtime, served, backbone)


@asynccontextmanager
async def running_embedder(
    backbone: TinyTextBackbone, *, start: bool = True, **options: int
) -> AsyncIterator[TinyStack]:
    """`build_embedder` with its own tokenizer pool, started (unless `start` is False) and closed
    on the way out, the pool too. `options` go to `build_embedder`."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="test-tokenize")
    stack = build_embedder(backbone, pool, **options)
    try:
        if start:
            await stack.embedder.start()
        yield stack
    finally:
        await stack.embedder.close()
        pool.shutdown(wait=True)
