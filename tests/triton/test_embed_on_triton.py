"""The Embed integration checks, unchanged, against a gateway whose backbone runs on Triton.

The imported tests take `server`, `channel` and `embedding_stub` from tests/triton/conftest.py:
the real tritonserver behind the real gateway. Only ListBackbones differs (runtime is "triton").
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from service.backbones.card import BackboneCard, model_path, sha256_of_file
from service.backbones.modalities.text import TextModality
from service.backbones.runtimes.embedded import EmbeddedOptions, EmbeddedRuntime
from tests.conftest import BACKBONE
from tests.integration.conftest import cosines, text_request, vectors
from tests.integration.test_embed import (  # noqa: F401 - collected here, run against Triton
    test_a_text_embeds_the_same_whatever_it_is_batched_with,
    test_concurrent_clients_each_get_their_own_vectors,
    test_embeddings_equal_sentence_transformers,
    test_long_text_is_truncated_like_sentence_transformers,
)
from tests.integration.test_errors import (  # noqa: F401
    test_bad_input_is_invalid_argument_naming_the_field,
    test_bad_requests_do_not_disturb_concurrent_good_ones,
)
from transferd.v1 import embedding_pb2


def test_list_backbones_reports_the_triton_runtime(embedding_stub, model_repo: Path) -> None:
    backbones = embedding_stub.ListBackbones(embedding_pb2.ListBackbonesRequest()).backbones
    assert {b.runtime for b in backbones} == {"triton"}  # every exported backbone, text or image
    (backbone,) = [b for b in backbones if b.name == BACKBONE]
    assert backbone.dim == 384
    assert backbone.fingerprint == sha256_of_file(model_path(model_repo / BACKBONE))


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
