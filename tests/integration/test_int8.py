"""The int8 MiniLM of the default repository: a backbone of its own, as accurate for heads as the
float one, built by `transferd export --quantize int8` behind its accuracy gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.backbones.card import BackboneCard
from service.export import int8_gate
from service.export.verify import ExportVerificationError
from tests.conftest import BACKBONE, ROOT
from tests.integration.conftest import (
    cosines,
    labelled,
    text_request,
    topics,
    train_request,
    train_to_success,
    vectors,
)
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc

INT8 = f"{BACKBONE}-int8"


def test_it_is_listed_with_its_own_fingerprint_and_embeds_close_to_float(
    embedding_stub: embedding_pb2_grpc.EmbeddingServiceStub, sentences: list[str]
) -> None:
    listed = {
        b.name: b
        for b in embedding_stub.ListBackbones(embedding_pb2.ListBackbonesRequest()).backbones
    }
    assert listed[INT8].dim == listed[BACKBONE].dim == 384
    assert listed[INT8].fingerprint != listed[BACKBONE].fingerprint  # heads never mix the two
    float_rows = vectors(embedding_stub.Embed(text_request(sentences)))
    int8_rows = vectors(embedding_stub.Embed(text_request(sentences, backbone=INT8)))
    similarity = cosines(float_rows, int8_rows)
    # The gate saw 0.983 at worst on English prose; these sentences mix languages and lengths.
    assert similarity.min() >= 0.9 and similarity.mean() >= 0.98, similarity
    assert not np.array_equal(float_rows, int8_rows)  # really the quantized graph


def _held_out_accuracy(stub: heads_pb2_grpc.HeadServiceStub, head: str) -> float:
    test = labelled(topics()["test"])
    reply = stub.Predict(
        heads_pb2.PredictRequest(head=head, inputs=[common_pb2.Input(text=t) for t, _ in test])
    )
    return float(
        np.mean([p.label == label for p, (_, label) in zip(reply.predictions, test, strict=True)])
    )


def test_a_head_on_int8_scores_as_well_as_on_float(
    heads_stub: heads_pb2_grpc.HeadServiceStub,
) -> None:
    """Same few-shot examples, one head per backbone: the int8 head may miss at most one more
    held-out sentence (of 36) than the float head."""
    pairs = labelled(topics()["train"])
    train_to_success(heads_stub, train_request("topics-float", pairs))
    train_to_success(heads_stub, train_request("topics-int8", pairs, backbone=INT8))
    on_float = _held_out_accuracy(heads_stub, "topics-float")
    on_int8 = _held_out_accuracy(heads_stub, "topics-int8")
    test_size = sum(len(texts) for texts in topics()["test"].values())
    assert on_float >= 0.8
    assert on_int8 >= on_float - 1 / test_size, (on_int8, on_float)
    head = heads_stub.GetHead(heads_pb2.GetHeadRequest(head="topics-int8"))
    assert head.backbone == INT8


def test_the_card_records_its_source_and_gate(model_repo: Path) -> None:
    card = BackboneCard.load(model_repo / INT8)
    source = BackboneCard.load(model_repo / BACKBONE)
    assert card.export["precision"] == "int8"
    assert card.export["quantized_from"] == {
        "backbone": BACKBONE,
        "fingerprint": source.fingerprint,
    }
    gate = card.export["gate"]
    assert gate["int8_lr_accuracy"] >= gate["float_lr_accuracy"] - int8_gate.MAX_LR_DROP
    assert gate["min_cosine"] >= int8_gate.MIN_COSINE and gate["texts"] >= 1000


def test_the_gate_refuses_embeddings_that_do_not_belong_to_their_texts(model_repo: Path) -> None:
    """The real model's embeddings of the gate's texts, against the same rows shuffled (what a
    broken graph gives): refused on the cosine floor and on both accuracies."""
    texts, labels = int8_gate.gate_corpus()
    card = BackboneCard.load(model_repo / BACKBONE)
    assert card.tokenizer_file and card.max_sequence_length
    rows = int8_gate.embed_texts(
        model_repo / BACKBONE / "1" / "model.onnx",
        model_repo / BACKBONE / card.tokenizer_file,
        card.max_sequence_length,
        texts,
    )
    int8_gate.check(int8_gate.measure(rows, rows, labels))
    shuffled = rows[np.random.default_rng(0).permutation(len(rows))]
    with pytest.raises(ExportVerificationError, match="worst cosine .*logistic-regression"):
        int8_gate.check(int8_gate.measure(rows, shuffled, labels))


def _export(model_repo: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "export", "--model-repo", str(model_repo), *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_the_cli_quantizes_text_backbones_only(model_repo: Path) -> None:
    """Up to date: nothing is rebuilt. An image backbone or a missing one is refused by name."""
    done = _export(model_repo, "--quantize", "int8")
    assert done.returncode == 0, done.stderr
    assert f"{INT8}: up to date" in done.stdout and "gate on" in done.stdout
    image = _export(model_repo, "--quantize", "int8", "--backbone", "efficientnet-lite0")
    assert image.returncode == 1
    assert "cannot quantize efficientnet-lite0: efficientnet-lite0: only text backbones" in (
        image.stderr
    )
    missing = _export(model_repo, "--quantize", "int8", "--backbone", "nope")
    assert missing.returncode == 1 and "no intact export of 'nope'" in missing.stderr
    assert not (model_repo / "nope-int8").exists()
    assert not (model_repo / "efficientnet-lite0-int8").exists()
