"""Counting repeated fields on the wire: exact for real messages, cheap for hostile ones."""

from __future__ import annotations

import pytest

from service.api.wire import (
    MalformedMessage,
    NestedOverLimit,
    OverLimit,
    count_nested,
    count_top_level,
)
from transferd.v1 import common_pb2, embedding_pb2, heads_pb2

INPUTS = embedding_pb2.EmbedRequest.DESCRIPTOR.fields_by_name["inputs"].number


def _embed(count: int) -> bytes:
    return embedding_pb2.EmbedRequest(
        backbone="b", inputs=[common_pb2.Input(text=f"text {i}") for i in range(count)]
    ).SerializeToString()


def test_a_message_at_the_limit_passes_and_one_more_is_over() -> None:
    assert count_top_level(_embed(10), {INPUTS: 10}, 8) is None
    assert count_top_level(_embed(11), {INPUTS: 10}, 8) == OverLimit(INPUTS, 10)


def test_every_field_type_is_skipped_correctly() -> None:
    request = heads_pb2.TrainHeadRequest(
        head="h", backbone="b", kind="knn", validation_fraction=0.25, params={"a": "1", "b": "2"},
        examples=[heads_pb2.Example(input=common_pb2.Input(text="x"), value=1.5)] * 3,
    )  # fmt: skip
    examples = request.DESCRIPTOR.fields_by_name["examples"].number
    params = request.DESCRIPTOR.fields_by_name["params"].number
    data = request.SerializeToString()
    assert count_top_level(data, {examples: 3, params: 2}, 4) is None
    assert count_top_level(data, {examples: 3, params: 1}, 4) == OverLimit(params, 1)
    assert count_top_level(data, {examples: 3, params: 2}, 3) == OverLimit(0, 3)


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\x05abc",
        b"\x12",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x00\x01",
        b"\x13",
    ],
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        count_top_level(data, {INPUTS: 10}, 8)


def test_ten_million_elements_cost_no_more_than_the_limit() -> None:
    # One input past the limit, then 20 MB that are not protobuf (wire type 7 does not exist):
    # counting stops at the limit, so it never reads them; a higher limit reads and refuses them.
    hostile = bytes([INPUTS << 3 | 2, 0]) * 1025 + bytes([1 << 3 | 7]) * 20_000_000
    assert count_top_level(hostile, {INPUTS: 1024}, 64) == OverLimit(INPUTS, 1024)
    with pytest.raises(MalformedMessage):
        count_top_level(hostile, {INPUTS: 2048}, 64)


EXAMPLES = heads_pb2.TrainHeadRequest.DESCRIPTOR.fields_by_name["examples"].number
LABELS = heads_pb2.Example.DESCRIPTOR.fields_by_name["labels"].number


def _train(labels_per_example: list[int]) -> bytes:
    return heads_pb2.TrainHeadRequest(
        head="h",
        examples=[
            heads_pb2.Example(
                input=common_pb2.Input(text="x"), labels=[f"l{i}" for i in range(count)]
            )
            for count in labels_per_example
        ],
    ).SerializeToString()


def test_nested_labels_are_counted_per_example_and_in_all() -> None:
    data = _train([3, 5, 2])
    assert count_nested(data, EXAMPLES, LABELS, per_element=5, in_all=10) is None
    assert count_nested(data, EXAMPLES, LABELS, per_element=4, in_all=10) == NestedOverLimit(1, 4)
    assert count_nested(data, EXAMPLES, LABELS, per_element=5, in_all=7) == NestedOverLimit(None, 7)


def test_a_label_bomb_costs_no_more_than_the_limit() -> None:
    # One example holding one label past the limit, then 20 MB that are not protobuf at all
    # (wire type 7 does not exist): counting stops at the limit, so it never reads them.
    example = bytes([LABELS << 3 | 2, 0]) * 10_001 + bytes([1 << 3 | 7]) * 20_000_000
    data = bytes([EXAMPLES << 3 | 2]) + _varint_bytes(len(example)) + example
    assert count_nested(data, EXAMPLES, LABELS, per_element=10_000, in_all=10**6) == (
        NestedOverLimit(0, 10_000)
    )
    # The same bytes are refused by a scan that reads them (this one, past a higher limit).
    with pytest.raises(MalformedMessage):
        count_nested(data, EXAMPLES, LABELS, per_element=20_000, in_all=10**6)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_an_element_that_overruns_its_length_is_malformed() -> None:
    inner = bytes([LABELS << 3 | 2, 5]) + b"ab"  # a label claiming 5 bytes, holding 2
    data = bytes([EXAMPLES << 3 | 2, len(inner)]) + inner + b"\x0a\x01h"
    with pytest.raises(MalformedMessage):
        count_nested(data, EXAMPLES, LABELS, per_element=5, in_all=10)
