"""Length buckets and call planning for Triton: bounded padding, calls within max_batch_size."""

from __future__ import annotations

import numpy as np

from service.backbones.modalities.text_batches import (
    bucket_length,
    collate_text_bucketed,
    text_call_planner,
)
from service.backbones.modalities.text_preprocessing import TokenizedText

MAX = 256


def _text(length: int, token: int = 7) -> TokenizedText:
    return TokenizedText(np.full(length, token, dtype=np.int64), truncated=False)


def test_buckets_for_a_256_token_model() -> None:
    buckets = sorted({bucket_length(n, MAX) for n in range(1, MAX + 1)})
    assert buckets == [16, 24, 32, 48, 64, 96, 128, 192, 256]


def test_a_bucket_holds_its_length_and_pads_less_than_a_third_beyond_16_tokens() -> None:
    for length in range(1, MAX + 1):
        padded = bucket_length(length, MAX)
        assert length <= padded <= MAX, length
        if length > 16:
            assert padded - length < padded / 3, length


def test_a_shorter_model_caps_the_last_bucket() -> None:
    assert bucket_length(100, 128) == 128
    assert bucket_length(120, 120) == 120


def test_calls_respect_max_batch_size_and_cover_every_item_once() -> None:
    rng = np.random.default_rng(0)
    items = [_text(int(n)) for n in rng.integers(1, MAX + 1, size=300)]
    calls = text_call_planner(MAX, lambda: 64)(items)
    assert sorted(i for call in calls for i in call) == list(range(300))
    assert all(1 <= len(call) <= 64 for call in calls)


def test_the_max_batch_size_is_read_when_planning() -> None:
    size = {"now": 64}
    plan = text_call_planner(MAX, lambda: size["now"])
    items = [_text(10) for _ in range(40)]
    assert len(plan(items)) == 1
    size["now"] = 8  # Triton came back with a smaller max_batch_size
    assert max(len(call) for call in plan(items)) <= 8


def test_texts_of_one_bucket_go_in_one_call_and_far_apart_lengths_do_not() -> None:
    items = [_text(n) for n in (26, 30, 25, 200, 31)]
    calls = text_call_planner(MAX, lambda: 64)(items)
    assert sorted(map(sorted, calls)) == [[0, 1, 2, 4], [3]]


def test_a_token_budget_counts_the_bucket_each_call_is_padded_to() -> None:
    """17-token texts are padded to 24: a budget of 70 tokens holds two of them (48), not the
    four that their own lengths (68) would allow; every call of mixed lengths stays within it."""
    plan = text_call_planner(MAX, lambda: 64, max_batch_tokens=70)
    assert [len(call) for call in plan([_text(17) for _ in range(6)])] == [2, 2, 2]
    rng = np.random.default_rng(1)
    items = [_text(int(n)) for n in rng.integers(1, 49, size=200)]  # buckets up to 48
    calls = plan(items)
    assert sorted(i for call in calls for i in call) == list(range(200))
    for call in calls:
        padded = collate_text_bucketed(MAX)([items[i] for i in call])["input_ids"].shape
        assert padded[0] * padded[1] <= 70, padded


def test_collate_pads_ids_and_mask_to_the_bucket_with_zeros() -> None:
    feed = collate_text_bucketed(MAX)([_text(20, token=5), _text(3, token=9)])
    assert set(feed) == {"input_ids", "attention_mask"}
    ids, mask = feed["input_ids"], feed["attention_mask"]
    assert ids.shape == mask.shape == (2, 24) and ids.dtype == mask.dtype == np.int64
    assert (ids[0, :20] == 5).all() and (ids[0, 20:] == 0).all()
    assert (ids[1, :3] == 9).all() and (ids[1, 3:] == 0).all()
    assert mask.sum(axis=1).tolist() == [20, 3]
