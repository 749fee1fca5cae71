"""Images over real gRPC: the EfficientNet-Lite0 backbone, image errors, an image head, mlp heads.

Every test here runs on both runtimes (`both_runtimes`). EfficientNet-Lite0 takes uint8 pixels of
a fixed size, so on Triton its calls always share a shape.
"""

from __future__ import annotations

import io
import struct
import zlib

import grpc
import numpy as np
import pytest
import skimage.data
from PIL import Image

from service.backbones.modalities.image_preprocessing import ImagePreprocessor
from tests.integration.conftest import (
    cosines,
    labelled,
    topics,
    train_request,
    vectors,
    wait_for_job,
)
from transferd.v1 import common_pb2, embedding_pb2, heads_pb2

pytestmark = pytest.mark.both_runtimes

IMAGE_BACKBONE = "efficientnet-lite0"
# Real photos and textures shipped with scikit-image: one class each.
PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "colorwheel", "grass", "brick",
)  # fmt: skip


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def crops(name: str, count: int, seed: int, fmt: str) -> list[bytes]:
    """Random crops (40–80% of the shorter side) of one photo, half of them mirrored."""
    photo = getattr(skimage.data, name)()
    rng = np.random.default_rng(seed)
    height, width = photo.shape[:2]
    out = []
    for i in range(count):
        side = int(min(height, width) * rng.uniform(0.4, 0.8))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        crop = photo[top : top + side, left : left + side]
        out.append(encode(crop[:, ::-1] if i % 2 else crop, fmt))
    return out


def png_bomb(side: int = 30000) -> bytes:
    """A valid PNG of side × side black 1-bit pixels: under 1 MB, 900 megapixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = bytes(1 + side // 8)
    compressor = zlib.compressobj(1)
    pixels = (
        b"".join(compressor.compress(row * 1000) for _ in range(side // 1000)) + compressor.flush()
    )
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def image(data: bytes) -> common_pb2.Input:
    return common_pb2.Input(image=data)


def test_image_backbone_is_listed(embedding_stub, runtime: str) -> None:
    reply = embedding_stub.ListBackbones(embedding_pb2.ListBackbonesRequest())
    (backbone,) = [b for b in reply.backbones if b.name == IMAGE_BACKBONE]
    assert (backbone.modality, backbone.dim, backbone.runtime) == ("image", 1280, runtime)
    assert len(backbone.fingerprint) == 64


def test_embedding_a_photo_equals_the_torch_model(embedding_stub) -> None:
    import torch

    from service.export import efficientnet

    photos = [encode(skimage.data.coffee(), "JPEG"), encode(skimage.data.chelsea(), "PNG")]
    reply = embedding_stub.Embed(
        embedding_pb2.EmbedRequest(backbone=IMAGE_BACKBONE, inputs=[image(p) for p in photos])
    )
    got = vectors(reply)
    assert got.shape == (2, 1280)
    decoder = ImagePreprocessor(efficientnet.IMAGE_SIZE, efficientnet.RESIZE_POLICY)
    pixels = np.stack([decoder.decode(p, "test") for p in photos])
    with torch.no_grad():
        expected = efficientnet.load_torch_model().features(
            torch.from_numpy(efficientnet.normalize(pixels))
        )
    assert cosines(got, expected.numpy()).min() >= 0.9999


BAD_IMAGES = {
    "corrupt data": (
        [image(encode(skimage.data.coffee(), "JPEG")), image(b"\xff\xd8\xff\xe0 not really")],
        "inputs[1].image",
    ),
    "30000 x 30000 PNG": (
        [image(png_bomb())],
        "inputs[0].image: image dimensions exceed the limit of 40000000 pixels",
    ),
    "text to an image backbone": ([common_pb2.Input(text="a photo of a cat")], "inputs[0].text"),
    "GIF": ([image(b"GIF89a" + bytes(100))], "inputs[0].image: not a PNG or JPEG image"),
    "over the byte limit": (
        [image(b"\x89PNG\r\n\x1a\n" + bytes(2_000_001))],
        "inputs[0].image: 2000009 bytes exceed",
    ),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_bad_images_are_invalid_argument_naming_the_input(embedding_stub, case: str) -> None:
    inputs, expected = BAD_IMAGES[case]
    with pytest.raises(grpc.RpcError) as caught:
        embedding_stub.Embed(embedding_pb2.EmbedRequest(backbone=IMAGE_BACKBONE, inputs=inputs))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()
    ok = embedding_stub.Embed(
        embedding_pb2.EmbedRequest(
            backbone=IMAGE_BACKBONE, inputs=[image(encode(skimage.data.rocket(), "PNG"))]
        )
    )
    assert len(ok.embeddings) == 1  # still serving


def test_an_image_head_recognises_held_out_photos(heads_stub) -> None:
    train = [(data, name) for name in PHOTOS for data in crops(name, 6, seed=1, fmt="JPEG")]
    test = [(data, name) for name in PHOTOS for data in crops(name, 4, seed=2, fmt="PNG")]
    request = heads_pb2.TrainHeadRequest(
        head="photos",
        backbone=IMAGE_BACKBONE,
        examples=[heads_pb2.Example(input=image(data), label=name) for data, name in train],
    )
    final = wait_for_job(heads_stub, heads_stub.TrainHead(request).job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
    reply = heads_stub.Predict(
        heads_pb2.PredictRequest(head="photos", inputs=[image(d) for d, _ in test])
    )
    accuracy = np.mean(
        [p.label == name for p, (_, name) in zip(reply.predictions, test, strict=True)]
    )
    assert accuracy >= 0.8  # chance is 0.1


def test_a_corrupt_training_image_is_refused_at_once_or_fails_the_job_naming_it(heads_stub) -> None:
    good = crops("coffee", 3, seed=3, fmt="JPEG") + crops("rocket", 3, seed=3, fmt="JPEG")
    labels = ["coffee"] * 3 + ["rocket"] * 3
    examples = [
        heads_pb2.Example(input=image(d), label=label)
        for d, label in zip(good, labels, strict=True)
    ]
    # Wrong magic bytes are caught before any job exists…
    bad_magic = [*examples, heads_pb2.Example(input=image(b"nonsense"), label="coffee")]
    with pytest.raises(grpc.RpcError) as caught:
        heads_stub.TrainHead(
            heads_pb2.TrainHeadRequest(head="bad", backbone=IMAGE_BACKBONE, examples=bad_magic)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "examples[6].input.image" in caught.value.details()
    # …a JPEG corrupt inside can only be found by decoding it: the job fails and names it.
    truncated = good[0][:200]
    bad_body = [
        *examples[:2],
        heads_pb2.Example(input=image(truncated), label="coffee"),
        *examples[2:],
    ]
    job = heads_stub.TrainHead(
        heads_pb2.TrainHeadRequest(head="bad", backbone=IMAGE_BACKBONE, examples=bad_body)
    )
    final = wait_for_job(heads_stub, job.job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_FAILED and "examples[2].input.image" in final.error


def test_mlp_heads_on_text(heads_stub) -> None:
    data = topics()
    job = heads_stub.TrainHead(train_request("mlp-topics", labelled(data["train"]), kind="mlp"))
    final = wait_for_job(heads_stub, job.job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
    head = heads_stub.GetHead(heads_pb2.GetHeadRequest(head="mlp-topics"))
    assert head.kind == "mlp" and "epochs" in head.params
    test = labelled(data["test"])
    reply = heads_stub.Predict(
        heads_pb2.PredictRequest(
            head="mlp-topics", inputs=[common_pb2.Input(text=t) for t, _ in test]
        )
    )
    accuracy = np.mean(
        [p.label == label for p, (_, label) in zip(reply.predictions, test, strict=True)]
    )
    assert accuracy >= 0.8  # chance is 1/6
    with pytest.raises(grpc.RpcError) as caught:
        heads_stub.TrainHead(
            train_request(
                "mlp-bad", labelled(data["train"]), kind="mlp", params={"dropout": "0.95"}
            )
        )
    assert (
        caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "params[dropout]" in caught.value.details()
    )
