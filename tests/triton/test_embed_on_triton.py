"""The gateway on Triton embeds exactly like the embedded runtime (ONNX Runtime in-process).

The Embed and error checks of tests/integration run on Triton too: those modules are marked
`both_runtimes` (tests/integration/servers.py), so every test added there runs on both runtimes.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from service.backbones.card import BackboneCard
from service.backbones.modalities.text import TextModality
from service.backbones.runtimes.embedded import EmbeddedOptions, EmbeddedRuntime
from tests.conftest import BACKBONE
from tests.integration.conftest import cosines, text_request, vectors


def _embedded_runtime_vectors(model_repo: Path, texts: list[str]) -> np.ndarray:
    """The same texts through the embedded runtime (ONNX Runtime in this process)."""
    folder = model_repo / BACKBONE
    card = BackboneCard.load(folder)
    assert card.tokenizer_file and card.max_sequence_length
    with ThreadPoolExecutor(1) as pool:
        modality = TextModality(
            card.name, folder / card.tokenizer_file, card.max_sequence_length, 1 << 20, pool
        )
        items = modality.preprocessor.tokenize(texts)
        options = EmbeddedOptions(
            threads=2, lanes=2, max_batch_size=64, max_batch_tokens=8192, max_wait_s=0.0
        )

        async def run() -> np.ndarray:
            runtime = EmbeddedRuntime(card, folder, modality, options)
            await runtime.start()
            try:
                return await runtime.embed(items, "test")
            finally:
                await runtime.close()

        return asyncio.run(run())


def test_triton_embeddings_equal_the_embedded_runtimes(
    embedding_stub, model_repo: Path, sentences: list[str]
) -> None:
    """Same texts, both runtimes: bucket padding and Triton's batching change nothing."""
    texts = [*sentences, " ".join(sentences)[:3000], "ok"]
    on_triton = vectors(embedding_stub.Embed(text_request(texts)))
    embedded = _embedded_runtime_vectors(model_repo, texts)
    assert on_triton.shape == embedded.shape == (len(texts), 384)
    assert cosines(on_triton, embedded).min() >= 0.9999
