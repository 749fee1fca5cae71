"""Export of an image encoder from a local Hugging Face folder: ViT and ResNet.

Like the EfficientNet export, the graph takes uint8 NHWC pixels `[N, S, S, 3]` (what
`service.backbones.modalities.image_preprocessing` produces) and does the cast, the rescale and normalisation of the
folder's `preprocessor_config.json` (image mean and std) and the NHWC → NCHW transpose itself.
ViT is pooled by its CLS token (default) or the mean of all tokens, after the final LayerNorm;
ResNet by its global average pool (`pooler_output`). L2 normalisation is optional (off by default).

The gateway resizes every image by the one shared policy (`shorter-side-bicubic-center-crop`),
not by the folder's processor, so that training and serving see the same pixels as every other
image backbone. Verification decodes real photos with that policy and compares ONNX Runtime with
the torch model on the same pixels. torch and transformers are imported here only.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from service.backbones.card import BackboneCard, sha256_of_file
from service.backbones.modalities.image_preprocessing import (
    RESIZE_SHORTER_SIDE_CENTER_CROP,
    ImagePreprocessor,
)
from service.backbones.modalities.tensors import image_tensors
from service.export.contract import IMAGE_INPUT_NAME, OPSET, OUTPUT_NAME, dynamic_axes
from service.export.efficientnet import verification_images
from service.export.hf_source import (
    ExportOptions,
    HfExportError,
    HfFolder,
    load_model,
)
from service.export.verify import check_min_cosine

log = logging.getLogger(__name__)

# Bump when the graph or the files written change: an up-to-date check compares it.
RECIPE = "hf-vision-uint8-nhwc/1"
RESIZE_POLICY = RESIZE_SHORTER_SIDE_CENTER_CROP
DEFAULT_IMAGE_SIZE = 224


class Preprocessing:
    """The folder's pixel arithmetic: x · rescale, then (x − mean) / std, per RGB channel."""

    def __init__(self, folder: HfFolder) -> None:
        from transformers import AutoImageProcessor

        try:
            # The PIL backend needs no torchvision; only the numbers are read from it.
            processor = AutoImageProcessor.from_pretrained(str(folder.path), backend="pil")
        except Exception as error:
            raise HfExportError(
                f"cannot read the image processor of {folder.path}: {error}"
            ) from error
        self.rescale = float(processor.rescale_factor) if processor.do_rescale else 1.0
        normalize = processor.do_normalize
        self.mean = [float(m) for m in processor.image_mean] if normalize else [0.0] * 3
        self.std = [float(s) for s in processor.image_std] if normalize else [1.0] * 3
        if len(self.mean) != 3 or len(self.std) != 3:
            raise HfExportError(f"{folder.path}: image mean/std must have 3 channels (RGB)")
        self.image_size = image_size(folder, processor.size)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC to the float NCHW the torch model takes (the reference path, in numpy)."""
        x: np.ndarray = pixels.astype(np.float32) * np.float32(self.rescale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def image_size(folder: HfFolder, processor_size: Any) -> int:
    """ViT: the size its position embeddings were made for; ResNet: the processor's size."""
    if folder.model_type == "vit":
        size = folder.config.get("image_size", DEFAULT_IMAGE_SIZE)
        return int(size if isinstance(size, int) else size[0])
    for key in ("shortest_edge", "height"):
        value = getattr(processor_size, key, None)
        if value:
            return int(value)
    return DEFAULT_IMAGE_SIZE


def dim(folder: HfFolder) -> int:
    if folder.model_type == "resnet":
        return int(folder.config["hidden_sizes"][-1])
    return int(folder.config["hidden_size"])


def pool(output: Any, model_type: str, pooling: str) -> Any:
    """The pooled features [N, D] of a model output (torch)."""
    if model_type == "resnet":
        return output.pooler_output.flatten(1)
    hidden = output.last_hidden_state
    return hidden[:, 0] if pooling == "cls" else hidden.mean(dim=1)


def export_onnx(
    folder: HfFolder, options: ExportOptions, prep: Preprocessing, out_file: Path
) -> None:
    """Traces uint8 NHWC pixels → cast, normalise, transpose → encoder → pooling to ONNX."""
    import torch

    class PixelsToFeatures(torch.nn.Module):
        # Buffers (registered in __init__), declared so they type as tensors, not `Tensor | Module`.
        mean: torch.Tensor
        std: torch.Tensor

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(prep.mean).view(1, 1, 1, 3))
            self.register_buffer("std", torch.tensor(prep.std).view(1, 1, 1, 3))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = (pixels.to(torch.float32) * prep.rescale - self.mean) / self.std
            output = self.model(pixel_values=x.permute(0, 3, 1, 2))
            pooled = pool(output, folder.model_type, options.pooling)
            if options.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    tensors = image_tensors(prep.image_size)
    (spec,) = tensors.values()
    sample = torch.from_numpy(np.zeros((2, *spec.dims), dtype=spec.dtype))
    wrapper = PixelsToFeatures(load_model(folder)).eval()
    raw = out_file.with_suffix(".raw.onnx") if folder.model_type == "vit" else out_file
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        torch.onnx.export(
            wrapper,
            (sample,),
            str(raw),
            input_names=list(tensors),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes(tensors),
            opset_version=OPSET,
            dynamo=False,
        )
    if folder.model_type == "vit":
        from onnxruntime.transformers import optimizer

        config = folder.config
        fused = optimizer.optimize_model(
            str(raw),
            model_type="vit",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            opt_level=1,
        )
        fused.save_model_to_file(str(out_file))


def verification_pixels(size: int) -> np.ndarray:
    """Real photos through the serving decoder and resize policy: uint8 [N, size, size, 3].

    The photos are the EfficientNet export's: scikit-learn's two samples, whole, cropped,
    mirrored, turned and grey, as PNG and JPEG.
    """
    decoder = ImagePreprocessor(size, RESIZE_POLICY)
    files = verification_images()
    return np.stack([decoder.decode(data, f"verification[{i}]") for i, data in enumerate(files)])


def reference_features(
    folder: HfFolder, options: ExportOptions, prep: Preprocessing, pixels: np.ndarray
) -> np.ndarray:
    """The torch model on the same pixels, normalised in numpy and pooled outside the graph."""
    import torch

    model = load_model(folder)
    with torch.no_grad():
        pooled = pool(
            model(pixel_values=torch.from_numpy(prep.apply(pixels))),
            folder.model_type,
            options.pooling,
        ).numpy()
    if options.normalize:
        pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled


def onnx_features(model_file: Path, pixels: np.ndarray) -> np.ndarray:
    """ONNX Runtime on the exported file, every image in one batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {IMAGE_INPUT_NAME: pixels})
    return out


def build(
    folder: HfFolder,
    options: ExportOptions,
    name: str,
    source: dict[str, str],
    min_cosine: float,
) -> tuple[BackboneCard, bytes, dict[str, bytes]]:
    """Exports and verifies; returns the card, the model and the side files, written nowhere yet.

    Raises:
        HfExportError: the preprocessor config cannot be read.
        ExportVerificationError: ONNX Runtime disagrees with the torch model.
    """
    prep = Preprocessing(folder)
    with tempfile.TemporaryDirectory(prefix="transferd-export-") as tmp:
        model_file = Path(tmp) / "model.onnx"
        export_onnx(folder, options, prep, model_file)
        pixels = verification_pixels(prep.image_size)
        worst = check_min_cosine(
            reference_features(folder, options, prep, pixels),
            onnx_features(model_file, pixels),
            min_cosine,
        )
        log.info("%s verified on %d images: min cosine %.7f", name, len(pixels), worst)
        size = prep.image_size
        card = BackboneCard(
            name=name,
            modality="image",
            dim=dim(folder),
            fingerprint=sha256_of_file(model_file),
            input_names=[IMAGE_INPUT_NAME],
            output_name=OUTPUT_NAME,
            pooling=options.pooling,
            normalized=options.normalize,
            source=source,
            export={
                "recipe": RECIPE,
                "opset": OPSET,
                "input": f"uint8 NHWC [N, {size}, {size}, 3], RGB",
                "pixel_rescale": prep.rescale,
                "pixel_mean": prep.mean,
                "pixel_std": prep.std,
                "verified_min_cosine": round(worst, 7),
                "verified_on": (
                    f"{len(pixels)} crops and flips of scikit-learn's sample photos, "
                    "PNG and JPEG, decoded by the serving decoder, vs the torch model"
                ),
            },
            image_size=size,
            resize_policy=RESIZE_POLICY,
        )
        return card, model_file.read_bytes(), {}
