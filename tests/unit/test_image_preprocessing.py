"""Image decoding and preprocessing: formats, orientation, colour modes, resize policy, limits."""

from __future__ import annotations

import io
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.backbones.modalities.image_preprocessing import (
    RESIZE_SHORTER_SIDE_CENTER_CROP,
    ImagePreprocessor,
    allow_pillow_pixels,
    collate_images,
    plan_image_batches,
    resize_policy,
    resize_shorter_side_center_crop,
)
from service.errors import InvalidArgument

SIZE = 32
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG assembled by hand: any header, any (already compressed) pixel data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def stripes(width: int, height: int, colors: list[tuple[int, int, int]]) -> Image.Image:
    """Vertical stripes of equal width, left to right."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for index, color in enumerate(colors):
        pixels[:, index * width // len(colors) : (index + 1) * width // len(colors)] = color
    return Image.fromarray(pixels)


def decoder(**limits: int) -> ImagePreprocessor:
    return ImagePreprocessor(SIZE, RESIZE_SHORTER_SIDE_CENTER_CROP, **limits)


def refused(data: bytes, pre: ImagePreprocessor | None = None, where: str = "inputs[3]") -> str:
    with pytest.raises(InvalidArgument) as caught:
        (pre or decoder()).decode(data, where)
    assert caught.value.field == f"{where}.image"
    return str(caught.value)


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus mild noise: compresses like a photo, survives JPEG well."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 4, (height, width, 3))
    channels = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 17)], axis=-1)
    return Image.fromarray(np.clip(channels + noise, 0, 255).astype(np.uint8))


# -- decoding and the resize policy ---------------------------------------------------------------


def test_png_decodes_to_the_policy_output_exactly() -> None:
    image = photo_like(300, 200)
    pixels = decoder().decode(encode(image, "PNG"), "inputs[0]")
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous
    expected = np.asarray(resize_shorter_side_center_crop(image, SIZE))
    assert np.array_equal(pixels, expected)


def test_jpeg_decodes_close_to_the_source() -> None:
    image = photo_like(300, 200)
    pixels = decoder().decode(encode(image, "JPEG", quality=95), "inputs[0]")
    expected = np.asarray(resize_shorter_side_center_crop(image, SIZE)).astype(np.int16)
    assert pixels.shape == (SIZE, SIZE, 3)
    assert np.abs(pixels.astype(np.int16) - expected).mean() < 3


def test_large_jpeg_is_decoded_at_reduced_scale_and_still_matches() -> None:
    image = photo_like(1280, 960)
    data = encode(image, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as probe:  # what `draft` does with the decoder's request
        probe.draft(None, (SIZE * 2, SIZE * 2))
        assert probe.size == (160, 120)  # 1/8 scale: the shorter side is still >= 2 × SIZE
    pixels = decoder().decode(data, "inputs[0]")
    expected = np.asarray(resize_shorter_side_center_crop(image, SIZE)).astype(np.int16)
    assert np.abs(pixels.astype(np.int16) - expected).mean() < 4


@pytest.mark.parametrize(("width", "height"), [(400, 100), (100, 400), (33, 32), (32, 32)])
def test_policy_keeps_the_centre_square(width: int, height: int) -> None:
    if width >= height:
        image = stripes(width, height, [RED, GREEN, BLUE])
    else:
        image = stripes(height, width, [RED, GREEN, BLUE]).transpose(Image.Transpose.ROTATE_90)
    out = resize_shorter_side_center_crop(image, SIZE)
    assert out.size == (SIZE, SIZE)
    if width != height and max(width, height) >= 3 * min(width, height):
        # The centred square lies inside the middle (green) stripe.
        assert np.array_equal(np.unique(np.asarray(out).reshape(-1, 3), axis=0), [GREEN])


def test_policy_is_named_and_unknown_policies_are_refused() -> None:
    assert resize_policy(RESIZE_SHORTER_SIDE_CENTER_CROP) is resize_shorter_side_center_crop
    with pytest.raises(ValueError, match="unknown resize policy"):
        resize_policy("stretch")
    with pytest.raises(ValueError):
        ImagePreprocessor(SIZE, "stretch")


def test_exif_orientation_is_applied() -> None:
    # Stored landscape, left half red, right half blue; orientation 6 means "rotate 90° clockwise
    # to display", so the displayed image is portrait with red on top and blue below.
    stored = stripes(64, 32, [RED, BLUE])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    for fmt in ("JPEG", "PNG"):
        pixels = decoder().decode(encode(stored, fmt, exif=exif.tobytes()), "inputs[0]")
        top, bottom = pixels[: SIZE // 2 - 2].reshape(-1, 3), pixels[SIZE // 2 + 2 :].reshape(-1, 3)
        assert np.abs(top.astype(int) - RED).max() < 40, fmt
        assert np.abs(bottom.astype(int) - BLUE).max() < 40, fmt
    # Without the tag the same pixels stay left/right.
    plain = decoder().decode(encode(stored, "PNG"), "inputs[0]")
    assert tuple(plain[0, 0]) == RED and tuple(plain[0, -1]) == BLUE


# -- colour modes ----------------------------------------------------------------------------------


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (0, 0, 40, 20))  # opaque blue top half
    pixels = decoder().decode(encode(rgba), "inputs[0]")
    assert tuple(pixels[2, SIZE // 2]) == BLUE
    assert tuple(pixels[-2, SIZE // 2]) == WHITE

    la = Image.new("LA", (40, 40), (0, 0))  # transparent black
    assert np.all(decoder().decode(encode(la), "inputs[0]") == 255)

    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 1
    assert np.all(decoder().decode(encode(palette, transparency=1), "inputs[0]") == 255)


def test_palette_grey_and_bilevel_become_rgb() -> None:
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    assert np.all(decoder().decode(encode(palette), "inputs[0]") == GREEN)

    grey = Image.new("L", (40, 40), 77)
    assert np.all(decoder().decode(encode(grey), "inputs[0]") == 77)
    assert np.all(decoder().decode(encode(grey, "JPEG"), "inputs[0]").astype(int) - 77 <= 2)

    bilevel = Image.new("1", (40, 40), 1)
    assert np.all(decoder().decode(encode(bilevel), "inputs[0]") == 255)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    wide = np.full((40, 40), 32896, dtype=np.uint16)  # 128 × 257: mid-grey, far above 255
    wide[:20] = 65535
    pixels = decoder().decode(encode(Image.fromarray(wide)), "inputs[0]")
    assert np.all(pixels[:14] == 255)
    assert np.all(pixels[-14:] == 128)


def test_16_bit_rgb_png_becomes_8_bit_rgb() -> None:
    row = b"\x00" + struct.pack(">HHH", 0xFFFF, 0x8000, 0x0000) * 40  # filter 0, 40 pixels
    data = png(40, 40, 16, 2, zlib.compress(row * 40))
    pixels = decoder().decode(data, "inputs[0]")
    assert np.all(pixels[..., 0] == 255) and np.all(pixels[..., 2] == 0)
    assert np.all(np.abs(pixels[..., 1].astype(int) - 128) <= 1)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # pure red ink-wise
    pixels = decoder().decode(encode(cmyk, "JPEG", quality=95), "inputs[0]")
    assert pixels.shape == (SIZE, SIZE, 3)
    assert np.abs(pixels.astype(int) - RED).max() < 10


# -- limits and bad data ---------------------------------------------------------------------------


def test_too_many_bytes_is_refused_before_decoding() -> None:
    data = encode(photo_like(64, 64))
    pre = decoder(max_bytes=len(data) - 1)
    message = refused(data, pre)
    assert f"{len(data)} bytes exceed the limit of {len(data) - 1}" in message
    with pytest.raises(InvalidArgument, match="exceed the limit"):
        pre.check(data, "inputs[3]")
    decoder(max_bytes=len(data)).decode(data, "inputs[0]")  # exactly at the limit: fine


def test_empty_and_unknown_data_is_refused_by_the_cheap_check() -> None:
    with pytest.raises(InvalidArgument, match=r"^inputs\[3\]\.image: must not be empty$"):
        decoder().check(b"", "inputs[3]")
    with pytest.raises(InvalidArgument, match=r"not a PNG or JPEG image"):
        decoder().check(b"hello, world", "inputs[3]")
    decoder().check(encode(photo_like(8, 8)), "inputs[3]")


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP", "ICO"])
def test_other_formats_are_refused(fmt: str) -> None:
    data = encode(photo_like(40, 40), fmt)
    assert refused(data).endswith("not a PNG or JPEG image")


def test_too_many_pixels_is_refused_from_the_header() -> None:
    image = photo_like(101, 100)
    message = refused(encode(image), decoder(max_pixels=10_000))
    assert "101x100 image (10100 pixels) exceeds the limit of 10000 pixels" in message
    decoder(max_pixels=10_100).decode(encode(image), "inputs[0]")  # at the limit: fine


def _reset_peak_rss() -> None:
    """Starts a new peak: VmHWM is otherwise the process's lifetime peak (like ru_maxrss)."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_bytes() -> int:
    """The resident-memory peak since the last `_reset_peak_rss`."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, "Linux reports VmHWM"
    return int(match.group(1)) * 1024


def _assert_refused_cheaply(data: bytes) -> str:
    _reset_peak_rss()
    before = _peak_rss_bytes()
    message = refused(data)
    # Decoding 30000 × 30000 would take 900 MB or more; the peak must not move by much.
    assert _peak_rss_bytes() - before < 64 * 1024 * 1024
    return message


def test_30000_square_png_bomb_is_refused_without_decoding() -> None:
    # A real, valid PNG: 30000 × 30000 black 1-bit pixels deflate to under 0.5 MB.
    row = bytes(1 + 30000 // 8)
    compressor = zlib.compressobj(1)
    chunks = [compressor.compress(row * 1000) for _ in range(30)] + [compressor.flush()]
    data = png(30000, 30000, 1, 0, b"".join(chunks))
    assert len(data) < 1024 * 1024
    assert "pixels" in _assert_refused_cheaply(data)
    # Declared size alone decides: the same header with a few bytes of pixel data.
    assert "pixels" in _assert_refused_cheaply(png(30000, 30000, 8, 2, zlib.compress(bytes(99))))


def test_30000_square_jpeg_bomb_is_refused_without_decoding() -> None:
    data = bytearray(encode(photo_like(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    assert "pixels" in _assert_refused_cheaply(bytes(data))


def test_pillow_guard_is_never_below_our_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    allow_pillow_pixels(5000)
    assert Image.MAX_IMAGE_PIXELS == 5000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # disabled by someone: re-armed
    allow_pillow_pixels(5000)
    assert Image.MAX_IMAGE_PIXELS == 5000


def test_a_preprocessor_leaves_pillow_s_process_state_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    decoder(max_pixels=5000)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_corrupt_data_is_refused() -> None:
    good = encode(photo_like(64, 64))
    assert "corrupt" in refused(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    assert "corrupt" in refused(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    broken = bytearray(good)
    broken[40:80] = bytes(40)  # zeroes part of the header and pixel chunks: CRC mismatch
    assert "corrupt" in refused(bytes(broken))


def test_truncated_files_are_refused() -> None:
    jpeg = encode(photo_like(128, 128), "JPEG")
    png_data = encode(photo_like(128, 128), "PNG")
    assert "truncated" in refused(jpeg[: len(jpeg) // 2])
    assert "truncated" in refused(png_data[: len(png_data) // 2])
    assert "truncated" in refused(jpeg[:20])


def test_errors_name_the_input() -> None:
    message = refused(b"GIF89a...", where="examples[7].input")
    assert message == "examples[7].input.image: not a PNG or JPEG image"


# -- batching --------------------------------------------------------------------------------------


def test_decoding_in_threads_gives_the_same_pixels() -> None:
    files = [encode(photo_like(120 + 10 * i, 90, seed=i), "JPEG") for i in range(6)]
    pre = decoder()
    serial = [pre.decode(data, f"inputs[{i}]") for i, data in enumerate(files)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(pre.decode, files, [f"inputs[{i}]" for i in range(6)]))
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_collate_stacks_uint8_nhwc() -> None:
    items = [np.full((SIZE, SIZE, 3), i, dtype=np.uint8) for i in range(3)]
    batch = collate_images(items)
    assert list(batch) == ["pixels"]
    assert batch["pixels"].shape == (3, SIZE, SIZE, 3) and batch["pixels"].dtype == np.uint8
    assert batch["pixels"][2, 0, 0, 0] == 2


def test_plan_image_batches_cuts_evenly() -> None:
    assert plan_image_batches(0, 64) == []
    assert plan_image_batches(3, 64) == [[0, 1, 2]]
    plan = plan_image_batches(80, 64)
    assert [len(b) for b in plan] == [40, 40]
    assert [i for b in plan for i in b] == list(range(80))
    assert [len(b) for b in plan_image_batches(129, 64)] == [43, 43, 43]
