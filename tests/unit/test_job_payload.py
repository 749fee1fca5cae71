"""The stored form of a training request: every input and target kind comes back exactly."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from service.backbones.inputs import EmbeddingInput, ImageInput, TextInput
from service.jobs.model import TrainingRequest
from service.jobs.payload import PayloadError, decode, encode

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3  # any bytes: images are stored as given


def _request(**changes: object) -> TrainingRequest:
    fields: dict[str, object] = dict(
        head="topic", backbone="tiny-text", kind="logistic_regression",
        inputs=[TextInput("a goal for the team"), TextInput("pluie et neige, 雪 ❄")],
        targets=["sports", "weather"], params={"C": "4", "class_weight": "balanced"},
        validation_fraction=0.25, embedding_dim=384,
    )  # fmt: skip
    fields.update(changes)
    return TrainingRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "targets",
    [
        ["sports", "weather"],  # classification
        [["a", "b"], []],  # multi-label, one example with none
        [1.5, -2.25e-3],  # regression
    ],
    ids=["label", "labels", "value"],
)
def test_every_target_kind_round_trips(targets: list) -> None:
    request = _request(targets=targets)
    assert decode(encode(request)) == request


def test_images_and_embeddings_round_trip_byte_for_byte() -> None:
    vector = np.array([0.5, -1.25, 3.0e-8], dtype=np.float32)
    request = _request(
        backbone="tiny-image",
        inputs=[ImageInput(PNG), ImageInput(b""), EmbeddingInput(vector)],
        targets=["a", "b", "a"],
    )
    back = decode(encode(request))
    assert [type(item) for item in back.inputs] == [ImageInput, ImageInput, EmbeddingInput]
    assert back.inputs[0] == ImageInput(PNG) and back.inputs[1] == ImageInput(b"")
    restored = back.inputs[2]
    assert isinstance(restored, EmbeddingInput) and restored.values.dtype == np.float32
    assert np.array_equal(restored.values, vector)
    assert (back.head, back.backbone, back.params, back.embedding_dim) == (
        request.head, request.backbone, request.params, request.embedding_dim,
    )  # fmt: skip


def test_text_is_compressed_and_stored_as_documented_json() -> None:
    request = _request(inputs=[TextInput("the same words again")] * 500, targets=["a", "b"] * 250)
    payload = encode(request)
    document = json.loads(zlib.decompress(payload))
    assert document["format"] == 1
    assert document["inputs"][0] == {"text": "the same words again"}
    assert document["targets"][:2] == [{"label": "a"}, {"label": "b"}]
    assert len(payload) < len(json.dumps(document)) / 10


@pytest.mark.parametrize(
    "payload",
    [
        b"not zlib at all",
        zlib.compress(b'{"format": 2, "head": "h"}'),
        zlib.compress(b'{"format": 1, "head": "h"}'),  # fields missing
        zlib.compress(b"[1, 2]"),
    ],
    ids=["garbage", "future-format", "incomplete", "not-an-object"],
)
def test_what_this_release_cannot_read_is_refused_clearly(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(payload)
