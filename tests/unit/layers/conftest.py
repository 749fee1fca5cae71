"""Fixtures of the layer tests: one tiny text backbone (a tokenizer built here, no model)."""

from __future__ import annotations

import pytest

from tests.support.tiny_backbone import TinyTextBackbone, make_tiny_text_backbone


@pytest.fixture(scope="session")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> TinyTextBackbone:
    """The tiny text backbone: a WordLevel tokenizer over `TOPICS`'s words, max 32 tokens."""
    return make_tiny_text_backbone(tmp_path_factory.mktemp("tiny-text"))
