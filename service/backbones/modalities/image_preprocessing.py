"""Image preprocessing: PNG/JPEG bytes → uint8 RGB pixels at the backbone's size, with Pillow.

One resize policy, shared by training and serving (both embed through this module), so a head
sees at prediction time exactly the pixels it was trained on. The backbone's graph takes these
uint8 NHWC pixels and does cast, normalisation and transpose itself.

Safety: the encoded size and the magic bytes are checked before Pillow sees the data, and the
pixel count is checked from the header (`Image.open` parses only the header) before anything is
decoded, so a small file that declares 30000 × 30000 pixels is refused without allocating them.
Large JPEGs are decoded at a reduced scale (libjpeg's DCT scaling via `draft`) when the reduced
image is still big enough for the resize. A progressive JPEG decodes its pixels once per scan, so
scans are counted (SOS markers, one C-speed pass over the bytes) and capped before decoding: a
small file of thousands of scans would otherwise cost seconds of CPU.

Decoding is CPU work that releases the GIL inside Pillow: run `ImagePreprocessor.decode` in a
thread pool, one image per task, and images decode in parallel.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from service.backbones.modalities.tensors import IMAGE_PIXELS
from service.errors import InvalidArgument

log = logging.getLogger(__name__)

# The only resize policy: scale so the shorter side is `size` (bicubic, antialiased), then keep
# the centred size × size square. Cropping keeps the aspect ratio (no squashing) and keeps the
# centre, where photographers put the subject; it is what ImageNet models are evaluated with.
RESIZE_SHORTER_SIDE_CENTER_CROP = "shorter-side-bicubic-center-crop"

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MAX_JPEG_SCANS = 64

# Start Of Scan. Entropy-coded data stuffs every 0xFF byte with 0x00, so the pair only occurs as
# a marker (or inside a metadata segment, e.g. an EXIF thumbnail's scans): counting it bounds scans.
JPEG_SOS = b"\xff\xda"
# Start Of Frame markers (C0-CF bar DHT C4, JPG C8, DAC CC): they carry the image's dimensions.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field (TEM, RSTn, SOI).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
# Real JPEGs have a dozen segments before the frame header; past this the size is taken unknown.
_MAX_HEADER_SEGMENTS = 256

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# MPO is how Pillow names a JPEG with extra (multi-picture) frames, as many phones write them.
_ALLOWED_FORMATS = ("PNG", "JPEG", "MPO")
_OPEN_FORMATS = ["PNG", "JPEG"]  # Pillow plugins allowed to parse the bytes at all

# A JPEG is decoded at 1/2, 1/4 or 1/8 scale when that still leaves its shorter side at least
# this many times the target size: the bicubic resize that follows then does the final,
# antialiased reduction from a little more resolution than it needs.
DRAFT_OVERSAMPLE = 2

_WHITE = (255, 255, 255)


def resize_shorter_side_center_crop(image: Image.Image, size: int) -> Image.Image:
    """The "shorter-side-bicubic-center-crop" policy.

    Equivalent to resizing the shorter side to `size` with bicubic interpolation and cropping
    the centred `size` × `size` square, done in one resampling pass over the centred square of
    the source (exactly centred, without the half-pixel rounding of crop-after-resize).

    Args:
        image: An RGB image of any size.
        size: The side of the square output.

    Returns:
        An RGB image of `size` × `size`.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)


RESIZE_POLICIES: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    RESIZE_SHORTER_SIDE_CENTER_CROP: resize_shorter_side_center_crop,
}


def resize_policy(name: str) -> Callable[[Image.Image, int], Image.Image]:
    """The resize function of a policy named in a backbone card.

    Raises:
        ValueError: the policy is unknown (a card from a newer exporter).
    """
    try:
        return RESIZE_POLICIES[name]
    except KeyError:
        known = ", ".join(sorted(RESIZE_POLICIES))
        raise ValueError(f"unknown resize policy {name!r} (known: {known})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PNG/JPEG mode to 8-bit RGB.

    Transparent pixels are composited on white (what a viewer shows, and what a transparent
    PNG's colour channels hold is arbitrary); 16-bit grey is scaled to 8 bits rather than
    clipped (Pillow's own conversion clips everything above 255 to white); CMYK goes through
    Pillow's conversion.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(image, dtype=np.float32)
        grey = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(grey), mode="L").convert("RGB")
    if image.mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        if not has_alpha:
            return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as a PNG's IHDR or a JPEG's frame header declares it, else None.

    Reads only the header, without Pillow: cheap enough for the event loop, where admission
    needs the cost of a request before anything is decoded.
    """
    if data.startswith(PNG_MAGIC):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return None
    if not data.startswith(JPEG_MAGIC):
        return None
    position = 2
    for _ in range(_MAX_HEADER_SEGMENTS):
        if position + 4 > len(data) or data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in _JPEG_STANDALONE:
            position += 2
        elif marker in _JPEG_SOF:
            if position + 9 > len(data):
                return None
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        elif marker == 0xDA:  # a scan before any frame header: corrupt
            return None
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def image_format(data: bytes) -> str | None:
    """ "PNG" or "JPEG" from the magic bytes, else None."""
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    return None


def allow_pillow_pixels(max_pixels: int) -> None:
    """Keeps Pillow's own bomb guard as a second line of defence without it refusing (or warning
    about) an image within our limit: Pillow's process-wide MAX_IMAGE_PIXELS is raised to
    `max_pixels` when lower, and re-armed when disabled. Called once per image backbone when the
    server is built (never by a constructor): it is process state, set where the server is wired.
    """
    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


class ImagePreprocessor:
    """Decodes PNG/JPEG bytes into uint8 RGB [size, size, 3] arrays by one resize policy.

    Errors are `InvalidArgument` naming ``{where}.image``, where `where` names the input the way
    `inputs.check_text` does: ``inputs[3]`` or ``examples[7].input``.

    Thread-safe and stateless after construction: call `decode` from many threads at once.
    """

    def __init__(
        self,
        image_size: int,
        resize_policy_name: str = RESIZE_SHORTER_SIDE_CENTER_CROP,
        max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS,
    ) -> None:
        """
        Args:
            image_size: Side of the square the backbone takes (the card's `image_size`).
            resize_policy_name: The card's `resize_policy`.
            max_bytes: Largest encoded image accepted.
            max_pixels: Largest width × height accepted, read from the header before decoding.
            max_jpeg_scans: Most scans (SOS markers) a JPEG may hold.

        Raises:
            ValueError: an unknown policy or a non-positive size or limit.
        """
        if image_size <= 0 or max_bytes <= 0 or max_pixels <= 0 or max_jpeg_scans <= 0:
            raise ValueError(
                "image_size, max_bytes, max_pixels and max_jpeg_scans must be positive"
            )
        self.image_size = image_size
        self.resize_policy_name = resize_policy_name
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.max_jpeg_scans = max_jpeg_scans
        self._resize = resize_policy(resize_policy_name)

    def check(self, data: bytes, where: str) -> None:
        """The cheap checks, without decoding: not empty, within the byte limit, PNG or JPEG magic,
        a JPEG's scans within their limit (the pixel limit is checked by `decode`, from the header).

        Call it on every input of a request before queueing any decoding, so that a bad input
        fails the request at once.

        Raises:
            InvalidArgument: naming ``{where}.image``.
        """
        field = f"{where}.image"
        if not data:
            raise InvalidArgument(field, "must not be empty")
        if len(data) > self.max_bytes:
            raise InvalidArgument(field, f"{len(data)} bytes exceed the limit of {self.max_bytes}")
        kind = image_format(data)
        if kind is None:
            raise InvalidArgument(field, "not a PNG or JPEG image")
        if kind == "JPEG":
            scans = data.count(JPEG_SOS)
            if scans > self.max_jpeg_scans:
                raise InvalidArgument(
                    field,
                    f"JPEG with {scans} scans exceeds the limit of {self.max_jpeg_scans} "
                    "(progressive JPEGs normally have about 10)",
                )

    def declared_pixels(self, data: bytes) -> int:
        """The pixels the header declares, the admission cost of decoding it; the pixel limit
        when the header cannot be read cheaply (Pillow then reads it, and checks it)."""
        size = declared_size(data)
        if size is None:
            return self.max_pixels
        return max(1, min(size[0] * size[1], self.max_pixels))

    def decode(self, data: bytes, where: str) -> np.ndarray:
        """Decodes, orients (EXIF), converts to RGB and resizes one image.

        Returns:
            uint8 array [image_size, image_size, 3], C-contiguous, RGB.

        Raises:
            InvalidArgument: naming ``{where}.image``: too many bytes or pixels, not PNG/JPEG,
                corrupt or truncated data.
        """
        self.check(data, where)
        field = f"{where}.image"
        try:
            with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as image:
                if image.format not in _ALLOWED_FORMATS:
                    raise InvalidArgument(field, "not a PNG or JPEG image")
                self._check_pixels(image.size, field)
                pixels = self._decode_open(image)
        except InvalidArgument:
            raise
        except Image.DecompressionBombError:
            raise InvalidArgument(
                field, f"image dimensions exceed the limit of {self.max_pixels} pixels"
            ) from None
        except MemoryError:
            raise
        except Exception as error:
            # Corrupt data makes Pillow raise OSError, SyntaxError, ValueError, EOFError,
            # struct.error, ...: all of them mean a bad image, never a server fault.
            log.debug("undecodable image at %s: %r", field, error)
            raise InvalidArgument(field, "corrupt or truncated PNG or JPEG data") from None
        return pixels

    def _check_pixels(self, size: tuple[int, int], field: str) -> None:
        width, height = size
        if width <= 0 or height <= 0:
            raise InvalidArgument(field, f"invalid image dimensions {width}x{height}")
        if width * height > self.max_pixels:
            raise InvalidArgument(
                field,
                f"{width}x{height} image ({width * height} pixels) exceeds the limit of "
                f"{self.max_pixels} pixels",
            )

    def _decode_open(self, image: Image.Image) -> np.ndarray:
        if image.format in ("JPEG", "MPO"):
            # Asks libjpeg for the largest 1/2, 1/4 or 1/8 reduction that keeps both sides at
            # least this big; the orientation does not matter: the request is square.
            target = self.image_size * DRAFT_OVERSAMPLE
            image.draft(None, (target, target))
        image.load()  # the decode itself, at the reduced size when drafted
        image = self._orient(image)
        rgb = to_rgb(image)
        resized = self._resize(rgb, self.image_size)
        pixels = np.asarray(resized, dtype=np.uint8)
        if pixels.shape != (self.image_size, self.image_size, 3):  # a policy bug, not the input
            raise RuntimeError(f"resize produced {pixels.shape}")
        return np.ascontiguousarray(pixels)

    @staticmethod
    def _orient(image: Image.Image) -> Image.Image:
        """Applies the EXIF orientation; an unreadable EXIF block is ignored, as viewers do."""
        try:
            ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to do
        except Exception as error:
            log.debug("ignoring unreadable EXIF orientation: %r", error)
        return image


def collate_images(items: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Stacks decoded images into the graph's input: ``{"pixels": uint8 [N, S, S, 3]}``.

    Every image of a backbone has the same size, so there is no padding: any split of a round
    into batches costs the same per image.
    """
    return {IMAGE_PIXELS: np.stack(items).astype(np.uint8, copy=False)}


def plan_image_batches(count: int, max_batch_size: int) -> list[list[int]]:
    """Cuts `count` images into consecutive batches of at most `max_batch_size`, as even as can be.

    Even sizes (e.g. 2 × 40 rather than 64 + 16) keep the per-call latency balanced.
    """
    if count <= 0:
        return []
    calls = -(-count // max_batch_size)
    base, extra = divmod(count, calls)
    batches: list[list[int]] = []
    start = 0
    for call in range(calls):
        size = base + (1 if call < extra else 0)
        batches.append(list(range(start, start + size)))
        start += size
    return batches
