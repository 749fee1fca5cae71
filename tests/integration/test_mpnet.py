"""all-mpnet-base-v2, the second default text backbone: exported from its five PyPI pieces,
listed, and served (on both runtimes) with sentence-transformers' own embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.backbones.card import BackboneCard, model_path, sha256_of_file
from service.export import mpnet
from tests.integration.conftest import cosines, text_request, vectors
from transferd.v1 import embedding_pb2

pytestmark = pytest.mark.both_runtimes

# About 750 tokens in 3.8 kB (under the 4 kB text limit): the server must truncate exactly where
# sentence-transformers does.
LONG_TEXT = " ".join(
    f"Clause {n}: the supplier shall deliver the goods within thirty days of the order, "
    "and any delay entitles the buyer to a discount of one percent per week."
    for n in range(25)
)


@pytest.fixture(scope="module")
def texts(sentences: list[str]) -> list[str]:
    return [*sentences, LONG_TEXT, "ok"]


@pytest.fixture(scope="module")
def reference(texts: list[str]) -> np.ndarray:
    """sentence-transformers on the folder the packages unzip to (torch, this process)."""
    from sentence_transformers import SentenceTransformer

    with mpnet.unpacked_weights() as folder:
        model = SentenceTransformer(str(folder), device="cpu")
        return model.encode(texts, batch_size=8, convert_to_numpy=True, show_progress_bar=False)


def test_the_export_is_verified_against_sentence_transformers_with_truncation(
    model_repo: Path,
) -> None:
    folder = model_repo / mpnet.NAME
    card = BackboneCard.load(folder)
    assert card.fingerprint == sha256_of_file(model_path(folder))
    assert (card.modality, card.dim, card.pooling, card.normalized) == ("text", 768, "mean", True)
    assert card.max_sequence_length == 384
    assert card.export["verified_min_cosine"] >= 0.9999
    assert "sentence-transformers" in card.export["verified_on"]
    assert "(1 truncated)" in card.export["verified_on"]
    assert card.source["packages"].split(",") == [f"{p}==0.0.1" for p in mpnet.PART_PACKAGES]


def test_list_backbones_lists_it_with_its_packages(embedding_stub) -> None:
    reply = embedding_stub.ListBackbones(embedding_pb2.ListBackbonesRequest())
    (listed,) = [b for b in reply.backbones if b.name == mpnet.NAME]
    assert (listed.modality, listed.dim) == ("text", 768)
    assert listed.source.startswith("sentence-transformers/all-mpnet-base-v2 (PyPI ")
    assert all(f"{package}==0.0.1" in listed.source for package in mpnet.PART_PACKAGES)


@pytest.mark.slow
def test_embed_equals_sentence_transformers_including_a_truncated_text(
    embedding_stub, texts: list[str], reference: np.ndarray
) -> None:
    served = vectors(embedding_stub.Embed(text_request(texts, backbone=mpnet.NAME)))
    assert served.shape == reference.shape == (len(texts), 768)
    assert cosines(served, reference).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    # Truncated at 384 tokens: another ending changes nothing.
    longer = vectors(embedding_stub.Embed(text_request([LONG_TEXT + " And more."], mpnet.NAME)))
    assert cosines(longer, served[[len(texts) - 2]]).min() >= 0.99999
