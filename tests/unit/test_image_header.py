"""Cheap image checks before decoding: declared size from the header, progressive JPEG scans."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.backbones.modalities.image_preprocessing import ImagePreprocessor, declared_size
from service.errors import InvalidArgument


def encode(width: int, height: int, fmt: str, **options: object) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("JPEG", {"exif": b"Exif\0\0"})],
)
def test_declared_size_reads_the_header(fmt: str, options: dict) -> None:
    assert declared_size(encode(321, 123, fmt, **options)) == (321, 123)


def test_unreadable_headers_cost_the_pixel_limit() -> None:
    decoder = ImagePreprocessor(224, max_pixels=1_000_000)
    assert declared_size(b"\xff\xd8\xff\xe0\x00") is None
    assert decoder.declared_pixels(b"\xff\xd8\xff\xe0\x00") == 1_000_000
    assert decoder.declared_pixels(encode(100, 50, "PNG")) == 5000


def repeated_scans(scans: int) -> bytes:
    data = encode(32, 32, "JPEG", progressive=True)
    first, end = data.index(b"\xff\xda"), data.rindex(b"\xff\xd9")
    body = data[first:end]
    return data[:first] + body * -(-scans // body.count(b"\xff\xda")) + data[end:]


def test_a_jpeg_with_too_many_scans_is_refused_naming_the_input() -> None:
    decoder = ImagePreprocessor(224, max_jpeg_scans=64)
    decoder.check(encode(32, 32, "JPEG", progressive=True), "inputs[0]")  # about 10 scans
    with pytest.raises(InvalidArgument) as caught:
        decoder.check(repeated_scans(3000), "inputs[3]")
    assert caught.value.field == "inputs[3].image"
    assert "scans exceeds the limit of 64" in str(caught.value)
    with pytest.raises(InvalidArgument):
        decoder.decode(repeated_scans(3000), "inputs[3]")  # decode checks it too
