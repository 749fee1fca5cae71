"""Length-aware batch planning: every item once, limits kept, little padding."""

from __future__ import annotations

import random

import numpy as np
import pytest

from service.backbones.modalities.text_batches import collate_text, plan_batches
from service.backbones.modalities.text_preprocessing import TokenizedText


def _padded_tokens(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("seed", range(5))
def test_every_item_exactly_once_within_limits(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 256) for _ in range(rng.randint(1, 300))]
    batches = plan_batches(lengths, max_batch_size=32, max_batch_tokens=4096)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 32
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 4096


def test_far_less_padding_than_request_order() -> None:
    rng = random.Random(7)
    lengths = [rng.choice([8, 12, 20, 256]) for _ in range(128)]
    planned = plan_batches(lengths, max_batch_size=64, max_batch_tokens=1 << 20)
    naive = [list(range(i, i + 32)) for i in range(0, 128, 32)]
    assert _padded_tokens(lengths, planned) < 0.5 * _padded_tokens(lengths, naive)


def test_equal_lengths_make_as_few_calls_as_the_size_limit_allows() -> None:
    batches = plan_batches([10] * 100, max_batch_size=40, max_batch_tokens=1 << 20)
    assert len(batches) == 3
    assert all(len(b) <= 40 for b in batches)


def test_an_item_longer_than_the_token_budget_still_runs_alone() -> None:
    assert plan_batches([500, 3], max_batch_size=8, max_batch_tokens=100) == [[1], [0]]


def test_collate_pads_to_the_longest_and_masks_padding() -> None:
    items = [
        TokenizedText(np.array([101, 7, 102]), False),
        TokenizedText(np.array([101, 102]), False),
    ]
    feed = collate_text(items)
    assert feed["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert feed["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert feed["input_ids"].dtype == np.int64
