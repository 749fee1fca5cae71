"""The image integration checks against a gateway whose backbones run on Triton (all but the
listing, which expects the embedded runtime: test_embed_on_triton checks every listed runtime).
EfficientNet-Lite0 takes uint8 pixels of a fixed size, so its calls always share a shape."""

from __future__ import annotations

from tests.integration.test_images import (  # noqa: F401 - collected here, run against Triton
    test_an_image_head_recognises_held_out_photos,
    test_bad_images_are_invalid_argument_naming_the_input,
    test_embedding_a_photo_equals_the_torch_model,
)
