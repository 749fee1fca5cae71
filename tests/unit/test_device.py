"""TRANSFERD_DEVICE: the provider each backbone's session gets, on this CPU-only ONNX Runtime, and
the IO-bound call path that CUDA uses, run here on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from service.backbones.card import BackboneCard
from service.backbones.runtimes.base import BackboneLoadError
from service.backbones.runtimes.device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    Placement,
    choose_placement,
    confirm_placement,
    run_bound,
)
from service.backbones.runtimes.embedded import make_session
from service.config import Device, Settings

WITH_CUDA = [CUDA_PROVIDER, CPU_PROVIDER]  # what onnxruntime-gpu reports


def _card(precision: str = "fp32") -> BackboneCard:
    return BackboneCard(
        name="b", modality="text", dim=3, fingerprint="0" * 64,
        input_names=["input_ids", "attention_mask"], output_name="embedding", pooling="mean",
        normalized=True, source={}, tokenizer_file="tokenizer.json", max_sequence_length=8,
        export={"precision": precision},
    )  # fmt: skip


def test_auto_is_the_default_and_takes_the_cpu_without_the_cuda_provider() -> None:
    assert Settings().device is Device.AUTO
    assert CUDA_PROVIDER not in ort.get_available_providers()  # this machine: onnxruntime (CPU)
    placement = choose_placement(Device.AUTO, _card())
    assert (placement.device, placement.providers) == ("cpu", [CPU_PROVIDER])
    assert CUDA_PROVIDER in placement.reason and "gpu extra" in placement.reason


def test_cuda_demanded_without_the_provider_is_refused_with_the_remedy() -> None:
    with pytest.raises(BackboneLoadError) as refused:
        choose_placement(Device.CUDA, _card())
    message = str(refused.value)
    assert "TRANSFERD_DEVICE=cuda" in message and CUDA_PROVIDER in message
    assert "transferd[gpu]" in message and CPU_PROVIDER in message


@pytest.mark.parametrize("asked", [Device.AUTO, Device.CUDA])
def test_with_the_cuda_provider_fp_backbones_go_to_cuda_and_int8_stays_on_the_cpu(
    asked: Device,
) -> None:
    on_gpu = choose_placement(asked, _card("fp16"), WITH_CUDA)
    assert (on_gpu.device, on_gpu.providers) == ("cuda", WITH_CUDA)
    int8 = choose_placement(asked, _card("int8"), WITH_CUDA)
    assert (int8.device, int8.providers) == ("cpu", [CPU_PROVIDER])
    assert "int8" in int8.reason
    assert choose_placement(Device.CPU, _card(), WITH_CUDA).device == "cpu"


def _model(folder: Path) -> Path:
    """A two-input graph shaped like a text backbone: embedding = ids * mask (float)."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 3])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", 3])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["input_ids", "attention_mask"], ["product"]),
            helper.make_node("Cast", ["product"], ["embedding"], to=TensorProto.FLOAT),
        ],
        "tiny",
        [ids, mask],
        [out],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_a_session_that_falls_back_from_cuda_is_refused_for_cuda_and_taken_for_auto(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Asked for CUDA first, ONNX Runtime without it starts the session on the CPU: `cuda`
    refuses that, `auto` records the CPU and logs why."""
    asked_for_cuda = Placement("cuda", WITH_CUDA, "TRANSFERD_DEVICE=auto")
    session = make_session(_model(tmp_path), 1, asked_for_cuda.providers)
    assert session.get_providers() == [CPU_PROVIDER]
    with pytest.raises(BackboneLoadError, match="could not start its CUDA provider"):
        confirm_placement(asked_for_cuda, Device.CUDA, session, _card())
    with caplog.at_level(logging.INFO, logger="service.backbones.runtimes.device"):
        placement = confirm_placement(asked_for_cuda, Device.AUTO, session, _card())
    assert placement.device == "cpu" and "did not start" in placement.reason
    assert "b runs on cpu: TRANSFERD_DEVICE=auto and the CUDA provider did not start" in caplog.text


def test_the_io_bound_call_gives_what_a_plain_run_gives(tmp_path: Path) -> None:
    """The IO-binding path CUDA takes, bound to the CPU here: same rows as session.run."""
    session = make_session(_model(tmp_path), 1)
    feed = {
        "input_ids": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64),
        "attention_mask": np.array([[1, 1, 0], [1, 0, 0]], dtype=np.int64),
    }
    (plain,) = session.run(["embedding"], feed)
    bound = run_bound(session, feed, "embedding", "cpu")
    np.testing.assert_array_equal(bound, plain)
    np.testing.assert_array_equal(bound, [[1, 2, 0], [4, 0, 0]])
