"""A bad request in Triton's dynamic batch fails alone: the good requests of its batch are answered.

Clients other than the gateway may call Triton directly. A request whose token ids lie outside
the vocabulary makes ONNX Runtime refuse the whole call it is batched into; the CPU model
(devtools/triton/python_model.py) must answer that request with an error and the others of the
same batch with their vectors, as Triton's onnxruntime backend answers each request on its own.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient import grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from devtools.triton.cpu_repo import CONFIG_FILE, load_config
from devtools.triton.process import TritonProcess, model_counters
from service.backbones.card import CARD_FILE, MODEL_FILE, MODEL_VERSION, BackboneCard, model_path
from tests.conftest import BACKBONE
from tests.triton.conftest import start_triton

GOOD = 7
LENGTH = 8
# Long enough that requests sent together always wait for each other and share one execution.
QUEUE_DELAY_US = 500_000


@pytest.fixture(scope="module")
def slow_batching_repo(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Path:
    """The text backbone alone, its production config with a longer batching delay."""
    source = model_repo / BACKBONE
    target = tmp_path_factory.mktemp("bad-request-repo") / BACKBONE
    (target / MODEL_VERSION).mkdir(parents=True)
    for name in (CARD_FILE, "tokenizer.json"):
        (target / name).write_bytes((source / name).read_bytes())
    (target / MODEL_VERSION / MODEL_FILE).symlink_to(model_path(source).resolve())
    config = load_config(source)
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    (target / CONFIG_FILE).write_text(text_format.MessageToString(config))
    return target.parent


@pytest.fixture(scope="module")
def slow_triton(
    tmp_path_factory: pytest.TempPathFactory, slow_batching_repo: Path
) -> Iterator[TritonProcess]:
    process = start_triton(tmp_path_factory.mktemp("bad-request-triton"), slow_batching_repo)
    yield process
    process.stop()


def _inputs(ids: np.ndarray) -> list[triton_grpc.InferInput]:
    mask = np.ones_like(ids)
    tensors = []
    for name, array in (("input_ids", ids), ("attention_mask", mask)):
        tensor = triton_grpc.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def test_a_bad_request_fails_alone_and_its_batch_is_answered(
    slow_triton: TritonProcess, slow_batching_repo: Path
) -> None:
    card = BackboneCard.load(slow_batching_repo / BACKBONE)
    rng = np.random.default_rng(0)
    good = [rng.integers(1000, 20000, size=(1, LENGTH), dtype=np.int64) for _ in range(GOOD)]
    bad = good[0].copy()
    bad[0, 3] = 10**9  # far outside the vocabulary: ONNX Runtime refuses the call it is in
    requests = {f"good-{i}": ids for i, ids in enumerate(good)} | {"bad": bad}

    replies: queue.Queue = queue.Queue()
    before = model_counters(slow_triton.metrics_url, BACKBONE)
    with triton_grpc.InferenceServerClient(slow_triton.grpc_url) as client:
        for request_id, ids in requests.items():
            client.async_infer(
                BACKBONE,
                _inputs(ids),
                callback=lambda result, error, rid=request_id: replies.put((rid, result, error)),
                request_id=request_id,
                outputs=[triton_grpc.InferRequestedOutput(card.output_name)],
            )
        got = [replies.get(timeout=60) for _ in requests]
    answered = {rid: (result, error) for rid, result, error in got}

    result, error = answered.pop("bad")
    assert result is None and isinstance(error, InferenceServerException)
    assert "out of range" in error.message()

    failed = {rid: error.message() for rid, (_, error) in answered.items() if error is not None}
    assert not failed, f"good requests failed with the bad one: {failed}"
    # They were one batch: the test would prove nothing if the bad request had run alone.
    after = model_counters(slow_triton.metrics_url, BACKBONE)
    assert after["nv_inference_exec_count"] - before["nv_inference_exec_count"] == 1
    vectors = {rid: result.as_numpy(card.output_name) for rid, (result, _) in answered.items()}
    assert all(v.shape == (1, card.dim) for v in vectors.values())
    # Each good request gets its own vector: the one it gets when it runs by itself.
    with triton_grpc.InferenceServerClient(slow_triton.grpc_url) as client:
        alone = client.infer(BACKBONE, _inputs(good[1])).as_numpy(card.output_name)
    np.testing.assert_allclose(vectors["good-1"], alone, atol=1e-5)
    assert not np.allclose(vectors["good-1"], vectors["good-2"], atol=1e-3)
